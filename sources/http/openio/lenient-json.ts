/**
 * `parseLenientJson`: JSON as the OpenIO proxy prints it. Real-valued tags are written
 * with `%f`, so a conscience answer can hold bare `nan`, `-nan`, `inf` or `-inf`, which
 * strict JSON refuses. Those tokens (outside strings) become `NaN`, `Infinity` and
 * `-Infinity`; everything else is parsed as strict JSON.
 *
 * @example
 * ```ts
 * parseLenientJson('{"stat.cpu":nan,"stat.io":inf}'); // { 'stat.cpu': NaN, 'stat.io': Infinity }
 * ```
 */

const SPECIAL = /^(-?)(nan|inf(?:inity)?)/i;
const MARK = '\u0000sluice-special:';

/** Parse `text`, reading bare nan/inf tokens as numbers. Throws a SyntaxError like JSON.parse otherwise. */
export function parseLenientJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (strictError) {
    if (!/nan|inf/i.test(text)) throw strictError;
  }
  let out = '';
  let last = 0;
  let inString = false;
  let escaped = false;
  let found = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      continue;
    }
    if (c === '-' || c === 'n' || c === 'N' || c === 'i' || c === 'I') {
      const m = SPECIAL.exec(text.slice(i, i + 10));
      if (m) {
        const value = /nan/i.test(m[2]!) ? 'NaN' : m[1] ? '-Infinity' : 'Infinity';
        out += text.slice(last, i) + JSON.stringify(MARK + value);
        i += m[0].length - 1;
        last = i + 1;
        found = true;
      }
    }
  }
  if (!found) return JSON.parse(text);
  return JSON.parse(out + text.slice(last), (_key, value: unknown) => {
    if (typeof value === 'string' && value.startsWith(MARK)) return Number(value.slice(MARK.length));
    return value;
  });
}
