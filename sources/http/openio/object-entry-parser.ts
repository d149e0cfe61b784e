/**
 * `ObjectEntryParser`: reads a JSON object's top-level entries as the text streams in,
 * handing out each `[key, value]` as soon as its value is complete, so an answer like
 * the meta0 prefix map (65,536 keys) is never held whole.
 *
 * @example
 * ```ts
 * const parser = new ObjectEntryParser();
 * for await (const chunk of body) for (const [prefix, services] of parser.push(chunk)) handle(prefix, services);
 * if (!parser.complete) throw new Error('cut short');
 * ```
 */
import { StringDecoder } from 'node:string_decoder';

type State = 'start' | 'key' | 'colon' | 'value' | 'done';

export class ObjectEntryParser {
  private readonly decoder = new StringDecoder('utf8');
  private state: State = 'start';
  private buffer = '';
  private key = '';
  private depth = 0;
  private inString = false;
  private escaped = false;

  /** the object closed */
  get complete(): boolean {
    return this.state === 'done';
  }

  push(chunk: Buffer | string): [string, unknown][] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const out: [string, unknown][] = [];
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      switch (this.state) {
        case 'start':
          if (c === '{') this.state = 'key';
          else if (!/\s/.test(c)) throw new SyntaxError('the answer is not a JSON object');
          break;
        case 'key':
          if (this.inString) {
            this.buffer += c;
            if (this.escaped) this.escaped = false;
            else if (c === '\\') this.escaped = true;
            else if (c === '"') {
              this.inString = false;
              this.key = JSON.parse(this.buffer) as string;
              this.buffer = '';
              this.state = 'colon';
            }
          } else if (c === '"') {
            this.inString = true;
            this.buffer = '"';
          } else if (c === '}') {
            this.state = 'done';
          } else if (!/\s/.test(c)) {
            throw new SyntaxError(`expected a key, found "${c}"`);
          }
          break;
        case 'colon':
          if (c === ':') this.state = 'value';
          else if (!/\s/.test(c)) throw new SyntaxError(`expected ":", found "${c}"`);
          break;
        case 'value': {
          if (this.inString) {
            this.buffer += c;
            if (this.escaped) this.escaped = false;
            else if (c === '\\') this.escaped = true;
            else if (c === '"') this.inString = false;
            break;
          }
          if (this.depth === 0 && (c === ',' || c === '}')) {
            if (this.buffer.trim() === '') throw new SyntaxError(`no value for key ${JSON.stringify(this.key)}`);
            out.push([this.key, JSON.parse(this.buffer)]);
            this.buffer = '';
            this.state = c === ',' ? 'key' : 'done';
            break;
          }
          if (c === '"') this.inString = true;
          else if (c === '{' || c === '[') this.depth++;
          else if (c === '}' || c === ']') this.depth--;
          this.buffer += c;
          break;
        }
        case 'done':
          if (!/\s/.test(c)) throw new SyntaxError('text after the end of the object');
          break;
      }
    }
    return out;
  }
}
