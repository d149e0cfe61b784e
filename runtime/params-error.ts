/** Params that fail the pipeline's schema: one line naming the param; nothing runs. */
export class ParamsError extends Error {
  override name = 'ParamsError';
}
