import { PermanentError } from './errors.ts';

/** A denied permission: permanent for the item, and it names the flag that would allow it. */
export class PermissionError extends PermanentError {
  override name = 'PermissionError';
  readonly flag: string;
  constructor(message: string, options: { item?: string; flag: string }) {
    super(message, { item: options.item, hint: `run with ${options.flag} to allow it` });
    this.flag = options.flag;
  }
}
