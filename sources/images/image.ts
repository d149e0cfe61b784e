/**
 * Source: the files of one image (ISO, squashfs, ext2/3/4, GPT/MBR disk, qcow2, or one
 * of those xz/gzip/zstd/bzip2-compressed), one item each, like `files()` yields the
 * entries of a directory and `archive()` the members of a tarball. The image is opened
 * through `ctx.fs`, so the run's `read` permission applies (to a qcow2's backing files
 * too). See image-entries.ts for formats, nesting, spooling and limits.
 *
 * Items: id `<path>!<entry path>` (`alt.iso!live!usr/bin/bash`), data the
 * `ImageEntry`, bytes the bytes read from the image file since the previous item (so the
 * progress line shows how far into the outer image the run is). An entry's `content()`
 * stays readable until its item is acknowledged, whatever `maxInFlight` is.
 *
 * Errors: the image cannot be opened (missing, not allowed): thrown (a `FatalError`, or
 * the `PermissionError`); an entry that cannot be read (a corrupt directory, a nested
 * image that is broken): an item with `error` set, the others go on; the image is not an
 * image or breaks off: the items before it, then one error item with the image's path.
 *
 * @example
 * ```ts
 * export default definePipeline({
 *   name: 'iso-sums',
 *   description: 'sha256 of every file of an ISO, nested squashfs included',
 *   params: z.object({ iso: z.string() }),
 *   permissions: ({ params }) => ({ read: [params.iso] }),
 *   source: (ctx) => image(ctx, { path: ctx.params.iso }),
 *   transform: () => mapConcurrent(async (e: ImageEntry) => ({ path: e.path, ...(await hashStream(e.content())) }), 2),
 *   sinks: () => [stdout()],
 *   onError: 'skip',
 * });
 * ```
 */
import type { RunContext } from '../../runtime/context.ts';
import { FatalError, PermanentError, SluiceError } from '../../runtime/errors.ts';
import { item, type TaggedItem } from '../../runtime/pipeline.ts';
import type { EntryType } from '../entry.ts';
import { FileDevice } from './block-device.ts';
import { holdEntry, imageEntries, type ImageEntriesOptions } from './image-entries.ts';
import type { ImageEntry } from './image-entry.ts';

export interface ImageOptions extends Omit<ImageEntriesOptions, 'name' | 'path' | 'signal'> {
  /** the image file (relative to the working directory, or absolute) */
  readonly path: string;
  /** which kinds of entries are yielded (default `['file']`); error items are yielded whatever their kind */
  readonly types?: readonly EntryType[];
}

export async function* image(ctx: RunContext, options: ImageOptions): AsyncGenerator<TaggedItem<ImageEntry>, void, undefined> {
  const { path: file, types: wanted, ...rest } = options;
  const types = new Set<EntryType>(wanted ?? ['file']);
  let device: FileDevice;
  try {
    device = await FileDevice.open(ctx, file);
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw new FatalError(`cannot open image ${file}: ${err instanceof Error ? err.message : String(err)}`, { item: file, hint: 'check that the file exists and is readable', cause: err });
  }
  let counted = 0;
  const delta = () => {
    const d = device.bytesRead - counted;
    counted = device.bytesRead;
    return d;
  };
  let pending = 0;
  try {
    for await (const entry of imageEntries(ctx, device, { ...rest, name: file, path: file, signal: ctx.signal })) {
      pending += delta();
      if (entry.error) {
        yield item(`${file}!${entry.path}`, entry, { bytes: pending, error: entry.error });
        pending = 0;
        continue;
      }
      if (!types.has(entry.type)) continue;
      const release = holdEntry(entry);
      yield item(`${file}!${entry.path}`, entry, { bytes: pending, ack: release, nack: release });
      pending = 0;
    }
  } catch (err) {
    if (ctx.signal.aborted || !(err instanceof PermanentError)) throw err;
    yield item(file, brokenImage(file, err), { bytes: pending + delta(), error: err });
  }
}

function brokenImage(file: string, error: PermanentError): ImageEntry {
  return {
    path: '',
    absolutePath: file,
    type: 'file',
    size: 0,
    mode: 0,
    mtime: new Date(0),
    image: file,
    layer: '',
    innerPath: '',
    format: 'image',
    error,
    content: () => {
      throw error;
    },
  };
}
