/**
 * altrepo-iso — what an ALT Linux ISO holds, as the ALTRepo uploader recorded it, read
 * in user space without mounting: the image's metadata (params, volume descriptors, size,
 * sha256, md5, `.disk/info`), every file of every layer (the ISO itself and the squashfs
 * images `live`, `rescue`, `altinst` … inside it, read in place) with sha256 and md5,
 * the RPM packages under `ALTLinux/RPMS.*`/ (via sources/rpm), and the packages installed
 * in each layer (its rpmdb: Berkeley DB or sqlite). A layer without a database is
 * recorded by its file inventory (`image_files` with md5), to be matched against package
 * files later. Into ClickHouse (`images`, `image_files`, `image_packages`) and a JSON
 * Lines snapshot.
 *
 * ```sh
 * npm run pipeline -- altrepo-iso --param path=alt-workstation-10.1-x86_64.iso \
 *   --param edition=workstation --param version=10.1 --param arch=x86_64 --param branch=p10
 * ```
 */
import path from 'node:path';
import { concatMap, pipe } from 'rxjs';
import { z } from 'zod';
import { defineTable, type RowOf } from '../runtime/clickhouse/table.ts';
import type { RunContext } from '../runtime/context.ts';
import { PermanentError } from '../runtime/errors.ts';
import { definePipeline, type Sink } from '../runtime/pipeline.ts';
import { clickhouse } from '../sinks/clickhouse/index.ts';
import { snapshot } from '../sinks/snapshot.ts';
import { hashStream } from '../sources/files/hash-stream.ts';
import type { ImageEntry } from '../sources/images/image-entry.ts';
import { imageInventory, type ImageKindName, type InventoryItem } from '../sources/installed/image-inventory.ts';
import { pkgHash, readPackage } from '../sources/rpm/package.ts';

export const images = defineTable('images', {
  columns: {
    image_id: 'String',
    path: 'String',
    name: 'String',
    kind: 'LowCardinality(String)',
    volume_id: 'String',
    size: 'UInt64',
    sha256: 'String',
    md5: 'String',
    created: 'Nullable(DateTime)',
    publisher: 'String',
    application: 'String',
    disk_info: 'String',
    edition: 'String',
    version: 'String',
    release: 'String',
    arch: 'String',
    branch: 'String',
    date: 'String',
    url: 'String',
    os_id: 'String',
    os_version: 'String',
    layers: 'String',
    loaded_at: 'DateTime',
  },
  orderBy: ['image_id'],
  versionColumn: 'loaded_at',
});

export const imageFiles = defineTable('image_files', {
  columns: {
    image_id: 'String',
    layer: 'String',
    path: 'String',
    type: 'LowCardinality(String)',
    size: 'UInt64',
    mode: 'UInt32',
    mtime: 'DateTime',
    link_target: 'String',
    sha256: 'String',
    md5: 'String',
    loaded_at: 'DateTime',
  },
  orderBy: ['image_id', 'layer', 'path'],
  versionColumn: 'loaded_at',
});

export const imagePackages = defineTable('image_packages', {
  columns: {
    image_id: 'String',
    layer: 'String',
    source: 'LowCardinality(String)',
    path: 'String',
    name: 'String',
    epoch: 'UInt32',
    version: 'String',
    release: 'String',
    arch: 'String',
    pkg_hash: 'Nullable(UInt64)',
    sha1header: 'String',
    loaded_at: 'DateTime',
  },
  orderBy: ['image_id', 'layer', 'source', 'path', 'name', 'version', 'release', 'arch'],
  versionColumn: 'loaded_at',
});

export type ImageRow = RowOf<typeof images>;
export type ImageFileRow = RowOf<typeof imageFiles>;
export type ImagePackageRow = RowOf<typeof imagePackages>;

/** One record of the stream: a row and the table it goes to. */
export type AltrepoRecord =
  | { readonly table: 'images'; readonly row: ImageRow }
  | { readonly table: 'image_files'; readonly row: ImageFileRow }
  | { readonly table: 'image_packages'; readonly row: ImagePackageRow };

/** The params both altrepo pipelines take (what the old loaders took on their command line). */
export const imageParams = {
  path: z.string().describe('the image file'),
  name: z.string().default('').describe('a name for the image (default: the file name)'),
  edition: z.string().default('').describe('edition, e.g. workstation, server, education'),
  version: z.string().default('').describe('release version, e.g. 10.1'),
  release: z.string().default('').describe('release kind, e.g. release, beta, rc'),
  arch: z.string().default('').describe('architecture, e.g. x86_64'),
  branch: z.string().default('').describe('repository branch, e.g. p10, sisyphus'),
  date: z.string().default('').describe('build date, e.g. 2023-11-14'),
  url: z.string().default('').describe('where the image was published'),
  snapshot: z.string().default('.sluice/altrepo-images.jsonl').describe('where the JSON Lines snapshot is written'),
  hashImage: z.boolean().default(true).describe('hash the whole image first (sha256, md5; also its image_id)'),
  tempDir: z.string().default('').describe('where nested images that need random access are spooled (default: the OS temp dir)'),
  spoolBudget: z.number().int().positive().default(8 * 2 ** 30).describe('most bytes of spool files at once'),
};

export type ImageParams = z.infer<z.ZodObject<typeof imageParams>>;

const RPM_IN_REPO = /(^|\/)ALTLinux\/RPMS\.[^/]+\/[^/]+\.rpm$/;

/** The records of one inventory item. */
export function altrepoTransform(ctx: { params: ImageParams }) {
  const loadedAt = new Date();
  const p = ctx.params;
  // the image's sha256 once the first pass gave it, else its absolute path
  let imageId = path.resolve(p.path);
  return pipe(
    concatMap(async (it: InventoryItem): Promise<AltrepoRecord[]> => {
      switch (it.kind) {
        case 'progress':
          if (it.sha256) imageId = it.sha256;
          return [];
        case 'entry':
          return fileRecords(it.entry, imageId, loadedAt);
        case 'packages':
          return it.packages.map((pkg) => ({
            table: 'image_packages' as const,
            row: {
              image_id: imageId,
              layer: it.layer,
              source: 'db',
              path: it.dbPath,
              name: pkg.name,
              epoch: pkg.epoch ?? 0,
              version: pkg.version,
              release: pkg.release,
              arch: pkg.arch,
              pkg_hash: pkg.pkgHash ?? null,
              sha1header: pkg.sha1header ?? '',
              loaded_at: loadedAt,
            },
          }));
        case 'summary': {
          const img = it.image;
          const top = img.layers.find((l) => l.layer === '');
          const info = (top?.info ?? {}) as Record<string, unknown>;
          const os = img.layers.find((l) => l.osRelease)?.osRelease ?? {};
          const created = info.created instanceof Date ? dateTime(info.created) : null;
          return [
            {
              table: 'images',
              row: {
                image_id: imageId,
                path: img.path,
                name: p.name || path.basename(img.path),
                kind: img.kind,
                volume_id: String(info.volumeId ?? info.label ?? ''),
                size: img.size,
                sha256: img.sha256,
                md5: img.md5,
                created,
                publisher: String(info.publisher ?? ''),
                application: String(info.application ?? ''),
                disk_info: img.diskInfo ?? '',
                edition: p.edition,
                version: p.version,
                release: p.release,
                arch: p.arch,
                branch: p.branch,
                date: p.date,
                url: p.url,
                os_id: os.ID ?? '',
                os_version: os.VERSION_ID ?? '',
                layers: JSON.stringify(img.layers, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)),
                loaded_at: loadedAt,
              },
            },
          ];
        }
      }
    }),
    concatMap((records) => records),
  );
}

async function fileRecords(entry: ImageEntry, imageId: string, loadedAt: Date): Promise<AltrepoRecord[]> {
  const records: AltrepoRecord[] = [];
  let sha256 = '';
  let md5 = '';
  const hardLink = entry.type === 'file' && entry.linkTarget !== undefined;
  if (entry.type === 'file' && !hardLink) {
    if (RPM_IN_REPO.test(entry.innerPath)) {
      const [a, b] = entry.content().tee();
      const [sums, pkg] = await Promise.all([hashStream(a, ['sha256', 'md5']), readPackage(b, { source: `${entry.image}!${entry.path}` }).catch((err: unknown) => err)]);
      sha256 = sums.sha256;
      md5 = sums.md5;
      if (pkg instanceof Error) throw pkg instanceof PermanentError ? pkg : new PermanentError(String(pkg), { item: entry.path });
      const rpm = pkg as Awaited<ReturnType<typeof readPackage>>;
      records.push({
        table: 'image_packages',
        row: {
          image_id: imageId,
          layer: entry.layer,
          source: 'file',
          path: entry.innerPath,
          name: rpm.name,
          epoch: rpm.epoch ?? 0,
          version: rpm.version,
          release: rpm.release,
          arch: rpm.arch,
          pkg_hash: pkgHash(rpm),
          sha1header: rpm.sha1header ?? '',
          loaded_at: loadedAt,
        },
      });
    } else {
      ({ sha256, md5 } = await hashStream(entry.content(), ['sha256', 'md5']));
    }
  }
  records.unshift({
    table: 'image_files',
    row: {
      image_id: imageId,
      layer: entry.layer,
      path: entry.innerPath,
      type: hardLink ? 'hardlink' : entry.type,
      size: entry.size,
      mode: entry.mode,
      mtime: dateTime(entry.mtime),
      link_target: entry.linkTarget ?? '',
      sha256,
      md5,
      loaded_at: loadedAt,
    },
  });
  return records;
}

/** A time as ClickHouse's DateTime holds it (1970 to 2106): an ISO's unset dates (year 1900) become 1970. */
function dateTime(date: Date): Date {
  const t = date.getTime();
  if (!Number.isFinite(t) || t < 0) return new Date(0);
  return t > 4_294_967_295_000 ? new Date(4_294_967_295_000) : date;
}

/** A sink for the records of one table, as that table's rows (the others count as accepted). */
export function tableSink<T extends AltrepoRecord['table']>(table: T, sink: Sink<RowFor<T>>): Sink<AltrepoRecord> {
  return {
    name: sink.name,
    kind: sink.kind,
    batch: sink.batch,
    open: sink.open,
    close: sink.close,
    write: (records, ctx) => {
      const rows: RowFor<T>[] = [];
      for (const r of records) if (r.table === table) rows.push(r.row as RowFor<T>);
      return rows.length ? sink.write(rows, ctx) : undefined;
    },
  };
}

type RowFor<T extends AltrepoRecord['table']> = T extends 'images' ? ImageRow : T extends 'image_files' ? ImageFileRow : ImagePackageRow;

/** The sinks both altrepo pipelines write to. */
export function altrepoSinks(params: ImageParams): Sink<AltrepoRecord>[] {
  return [
    tableSink('images', clickhouse(images)),
    tableSink('image_files', clickhouse(imageFiles)),
    tableSink('image_packages', clickhouse(imagePackages)),
    snapshot<AltrepoRecord>({ path: params.snapshot, format: 'jsonl' }),
  ];
}

/** The source both pipelines use; the image id is the image's sha256 (known after the first pass). */
export function altrepoSource(ctx: RunContext & { params: ImageParams }, kind?: ImageKindName) {
  const p = ctx.params;
  return imageInventory(ctx, {
    path: p.path,
    ...(kind ? { kind } : {}),
    ...(p.tempDir ? { tempDir: p.tempDir } : {}),
    spoolBudget: p.spoolBudget,
    hashImage: p.hashImage,
  });
}

export default definePipeline({
  name: 'altrepo-iso',
  description: 'An ALT ISO: volume metadata, every file of every layer (nested squashfs read in place), RPMs under ALTLinux/RPMS.*, installed packages from each layer\'s rpmdb',
  params: z.object(imageParams),
  permissions: ({ params }) => ({
    read: [params.path, ...(params.tempDir ? [params.tempDir] : [])],
    write: ['.sluice', path.dirname(params.snapshot), ...(params.tempDir ? [params.tempDir] : [])],
  }),
  tables: [images, imageFiles, imagePackages],
  onError: 'skip',
  maxInFlight: 64,
  source: (ctx) => altrepoSource(ctx, 'iso'),
  transform: (ctx) => altrepoTransform(ctx),
  sinks: ({ params }) => altrepoSinks(params),
  nextSteps: ({ params }) => [
    '',
    'Look at what was loaded:',
    `  npm run query -- "SELECT layer, source, count() FROM image_packages FINAL GROUP BY layer, source ORDER BY layer"`,
    `  (snapshot: ${params.snapshot})`,
  ],
});
