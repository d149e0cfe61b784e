/**
 * `SampleArrayParser`: reads a JSON array of objects as it streams in, handing out each
 * complete object as soon as its closing brace arrives, with integers too large for a
 * double (nanosecond times, int64 values) kept exact: they are quoted before
 * `JSON.parse`, so they arrive as strings for the caller to turn into `BigInt`s.
 *
 * A stream that stops before the closing `]` (a server that failed mid-answer) leaves
 * `complete` false: the caller knows the last object it got and can resume after it.
 *
 * @example
 * ```ts
 * const parser = new SampleArrayParser();
 * for await (const chunk of body) for (const obj of parser.push(chunk)) handle(obj);
 * if (!parser.complete) resumeAfter(lastTime);
 * ```
 */
import { StringDecoder } from 'node:string_decoder';

const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const QUOTE = 34;
const BACKSLASH = 92;

/** Integers of this many digits or more may not fit a double exactly. */
const BIG_DIGITS = 16;

export class SampleArrayParser {
  private readonly decoder = new StringDecoder('utf8');
  /** text of the object being read, when it spans chunks */
  private partial = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private started = false;
  private ended = false;
  /** the array closed */
  get complete(): boolean {
    return this.ended;
  }
  /** no array started yet (empty body so far) */
  get empty(): boolean {
    return !this.started;
  }

  /** Feed bytes; returns the objects completed by them, parsed. Throws on text that is not an array of objects. */
  push(chunk: Buffer | string): Record<string, unknown>[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const out: Record<string, unknown>[] = [];
    let objectStart = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
        continue;
      }
      if (c === QUOTE) {
        if (this.depth === 0) throw new SyntaxError(`expected an object in the array, found a string at offset ${i}`);
        this.inString = true;
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (!this.started) {
          if (c !== OPEN_BRACKET) throw new SyntaxError('the answer is not a JSON array');
          this.started = true;
          continue;
        }
        if (this.ended) throw new SyntaxError('text after the end of the array');
        if (this.depth === 0) {
          if (c !== OPEN_BRACE) throw new SyntaxError('expected an object in the array, found an array');
          objectStart = i;
        }
        this.depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        if (this.depth === 0) {
          if (c === CLOSE_BRACKET && this.started && !this.ended) {
            this.ended = true;
            continue;
          }
          throw new SyntaxError(`unexpected "${String.fromCharCode(c)}"`);
        }
        this.depth--;
        if (this.depth === 0) {
          const objectText = this.partial + text.slice(objectStart, i + 1);
          this.partial = '';
          objectStart = -1;
          out.push(JSON.parse(quoteBigIntegers(objectText)) as Record<string, unknown>);
        }
      } else if (this.depth === 0 && c > 32 && c !== 44 /* , */) {
        if (!this.started) throw new SyntaxError('the answer is not a JSON array');
        throw new SyntaxError(`unexpected "${String.fromCharCode(c)}" between array elements`);
      }
    }
    if (this.depth > 0) this.partial += text.slice(objectStart === -1 ? 0 : objectStart);
    return out;
  }
}

/** Quote integer literals (outside strings) of 16+ digits, so JSON.parse keeps them exact as strings. */
export function quoteBigIntegers(text: string): string {
  if (!/\d{16}/.test(text)) return text;
  let out = '';
  let last = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (escaped) escaped = false;
      else if (c === BACKSLASH) escaped = true;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) {
      inString = true;
      continue;
    }
    const isMinus = c === 45;
    if ((c >= 48 && c <= 57) || isMinus) {
      let j = i + 1;
      while (j < text.length) {
        const d = text.charCodeAt(j);
        if (d >= 48 && d <= 57) j++;
        else break;
      }
      const next = j < text.length ? text.charCodeAt(j) : 0;
      const isInteger = next !== 46 /* . */ && next !== 101 /* e */ && next !== 69 /* E */;
      const digits = j - i - (isMinus ? 1 : 0);
      if (isInteger && digits >= BIG_DIGITS) {
        out += text.slice(last, i) + '"' + text.slice(i, j) + '"';
        last = j;
      }
      // skip the rest of the number (fraction, exponent)
      while (j < text.length && /[0-9.eE+-]/.test(text[j]!)) j++;
      i = j - 1;
    }
  }
  return last === 0 ? text : out + text.slice(last);
}
