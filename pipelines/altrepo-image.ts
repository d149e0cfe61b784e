/**
 * altrepo-image — what an ALT disk image holds (a raw `.img`, `.img.xz`, a qcow2 with
 * its backing files, a partitioned disk, or a tar of a root file system), read in user
 * space: image metadata (params, size, sha256, md5, partitions, file system label and
 * UUID), `/etc/os-release`, the installed packages from the rpmdb (sqlite or Berkeley
 * DB) or dpkg status of each partition, and the file inventory of every partition. Same
 * tables as altrepo-iso (`images`, `image_files`, `image_packages`).
 *
 * ```sh
 * npm run pipeline -- altrepo-image --param path=alt-p10-cloud-x86_64.qcow2 --param branch=p10 --param arch=x86_64
 * ```
 *
 * A qcow2's backing file is opened only under the `read` roots: add its directory with
 * `--allow-read=DIR` (or the `backingDir` param) when it lives elsewhere.
 */
import path from 'node:path';
import { z } from 'zod';
import { definePipeline } from '../runtime/pipeline.ts';
import { altrepoSinks, altrepoSource, altrepoTransform, imageFiles, imageParams, imagePackages, images } from './altrepo-iso.ts';

export default definePipeline({
  name: 'altrepo-image',
  description: 'An ALT disk image (img, img.xz, qcow2, tar): partitions, os-release, installed packages, file inventory',
  params: z.object({
    ...imageParams,
    kind: z.enum(['auto', 'img', 'qcow2', 'tar']).default('auto').describe('what the image is (auto: from its bytes)'),
    backingDir: z.string().default('').describe('a directory a qcow2 backing file may be read from (besides the image\'s own path)'),
  }),
  permissions: ({ params }) => ({
    read: [params.path, ...(params.backingDir ? [params.backingDir] : []), ...(params.tempDir ? [params.tempDir] : [])],
    write: ['.sluice', path.dirname(params.snapshot), ...(params.tempDir ? [params.tempDir] : [])],
  }),
  tables: [images, imageFiles, imagePackages],
  onError: 'skip',
  maxInFlight: 64,
  source: (ctx) => altrepoSource(ctx, ctx.params.kind === 'auto' ? undefined : ctx.params.kind),
  transform: (ctx) => altrepoTransform(ctx),
  sinks: ({ params }) => altrepoSinks(params),
});
