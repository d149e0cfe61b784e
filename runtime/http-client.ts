/**
 * The one HTTP client every source uses: undici with pooled connections, the run's
 * `net` permission checked before every request, deadlines, and errors that name the
 * URL and the phase. Status codes are classified: 429/502/503/504 are transient
 * (honouring Retry-After), other 4xx/5xx are permanent for the item.
 */
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { PermanentError, TransientError } from './errors.ts';
import type { Permissions } from './permissions.ts';

export interface HttpRequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD';
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  signal?: AbortSignal;
  /** total deadline for headers and body, ms */
  timeoutMs?: number;
  /** refuse bodies larger than this, bytes */
  maxBytes?: number;
}

export interface HttpResponse {
  url: string;
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const TRANSIENT_STATUS = new Set([429, 502, 503, 504]);

export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export class HttpClient {
  private readonly dispatcher: Dispatcher;
  constructor(private readonly permissions: Permissions, options: { connections?: number } = {}) {
    this.dispatcher = new Agent({ connections: options.connections ?? 16, keepAliveTimeout: 10_000 });
  }

  async request(url: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
    this.permissions.checkNet(url, url);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
    let phase = 'connect';
    try {
      const res = await undiciRequest(url, {
        method: options.method ?? 'GET',
        headers: options.headers,
        body: options.body,
        signal: AbortSignal.any(signals),
        dispatcher: this.dispatcher,
      });
      phase = 'body';
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += chunk.length;
        if (options.maxBytes !== undefined && size > options.maxBytes) {
          res.body.destroy();
          throw new PermanentError(`response body over ${options.maxBytes} bytes`, { item: url, hint: 'raise the size cap for this endpoint if the server is right' });
        }
        chunks.push(chunk as Buffer);
      }
      const response: HttpResponse = { url, status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
      if (res.statusCode >= 400) {
        const message = `HTTP ${res.statusCode} from ${url}`;
        if (TRANSIENT_STATUS.has(res.statusCode)) {
          throw new TransientError(message, { item: url, retryAfterMs: parseRetryAfter(res.headers['retry-after']) });
        }
        throw Object.assign(new PermanentError(message, { item: url }), { status: res.statusCode, response });
      }
      return response;
    } catch (err) {
      if (err instanceof TransientError || err instanceof PermanentError) throw err;
      const e = err as Error & { code?: string; name?: string };
      if (options.signal?.aborted) throw err;
      const reason = e.name === 'TimeoutError' || e.name === 'AbortError' ? `timed out after ${timeoutMs} ms` : (e.code ?? e.message);
      throw new TransientError(`${url}: ${phase} failed: ${reason}`, { item: url, cause: err });
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
