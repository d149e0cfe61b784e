/**
 * Finds and loads pipeline files. The runtime imports pipelines by path (it never
 * imports a component), so `pipelines/` is the only place that ties things together.
 * `SLUICE_PIPELINES_DIR` points elsewhere (tests, a site's own pipelines).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { AnyPipeline } from './pipeline.ts';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function pipelinesDir(): string {
  return path.resolve(process.env.SLUICE_PIPELINES_DIR ?? path.join(PROJECT_ROOT, 'pipelines'));
}

export class PipelineLoadError extends Error {
  override name = 'PipelineLoadError';
}

export async function listPipelineNames(dir = pipelinesDir()): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    throw new PipelineLoadError(`cannot read the pipelines directory ${dir}: ${(err as Error).message}`);
  }
  return entries
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.startsWith('_') && !f.endsWith('.test.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

/** Import `<dir>/<name>.ts` and check that its default export is a pipeline definition. */
export async function loadPipeline(name: string, dir = pipelinesDir()): Promise<AnyPipeline> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new PipelineLoadError(`"${name}" is not a pipeline name`);
  const names = await listPipelineNames(dir);
  if (!names.includes(name)) {
    throw new PipelineLoadError(`no pipeline "${name}" in ${dir}; known pipelines: ${names.join(', ') || '(none)'}`);
  }
  const file = path.join(dir, `${name}.ts`);
  let module: { default?: unknown };
  try {
    module = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new PipelineLoadError(`${file}: cannot be loaded: ${(err as Error).message}`);
  }
  return validatePipeline(module.default, file, name);
}

function validatePipeline(value: unknown, file: string, name: string): AnyPipeline {
  const p = value as Partial<AnyPipeline> | undefined;
  const problems: string[] = [];
  if (!p || typeof p !== 'object') {
    throw new PipelineLoadError(`${file}: has no default export; write \`export default definePipeline({...})\``);
  }
  if (p.name !== name) problems.push(`name is ${JSON.stringify(p.name)} but the file is ${name}.ts (they must match)`);
  if (typeof p.description !== 'string' || !p.description) problems.push('description is missing');
  if (!p.params || typeof (p.params as { safeParse?: unknown }).safeParse !== 'function' || !('shape' in p.params)) {
    problems.push('params must be a zod object schema (z.object({...}))');
  }
  if (typeof p.source !== 'function') problems.push('source must be a function (ctx) => source');
  if (typeof p.sinks !== 'function') problems.push('sinks must be a function (ctx) => [sinks]');
  if (p.transform !== undefined && typeof p.transform !== 'function') problems.push('transform must be a function (ctx) => operator');
  if (p.onError !== undefined && !['fail', 'skip', 'dead-letter'].includes(p.onError)) problems.push(`onError must be fail, skip or dead-letter, not ${JSON.stringify(p.onError)}`);
  if (problems.length) throw new PipelineLoadError(`${file}: ${problems.join('; ')}`);
  return p as AnyPipeline;
}
