/**
 * The two ways metrics leave the process: an HTTP `/metrics` endpoint for Prometheus to
 * scrape (the daemon), and a node_exporter textfile (`*.prom`) for one-shot CLI runs,
 * which a cron job cannot be scraped for.
 *
 * @example
 * ```ts
 * const server = await serveMetrics(registry, { port: 9464, signal });
 * // … curl http://127.0.0.1:9464/metrics
 * await server.close();
 *
 * await writeMetricsTextfile(registry, '/var/lib/node_exporter/textfile/sluice_cvmfs.prom', ctx.fs);
 * ```
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Registry, type RegistryContentType } from 'prom-client';
import { FatalError } from './errors.ts';
import { listen } from './http-listener.ts';
import type { GuardedFs } from './guarded-fs.ts';

export interface ServeMetricsOptions {
  /** TCP port; 0 picks any free port (see the returned `port`) */
  readonly port: number;
  /** interface to listen on; default 127.0.0.1 (use 0.0.0.0 or :: to be reachable from elsewhere) */
  readonly host?: string;
  /** closes the server when aborted */
  readonly signal?: AbortSignal;
}

export interface MetricsServer {
  /** the port actually listened on */
  readonly port: number;
  /** stops listening and drops open connections; safe to call more than once */
  close(): Promise<void>;
}

/**
 * The registry in the text exposition format. prom-client writes NaN as `Nan`; the
 * format (and every other client library) spells it `NaN`, so sample lines are fixed.
 */
async function exposition(registry: Registry<RegistryContentType>): Promise<string> {
  const text = await registry.metrics();
  return text.replace(/^([^#\n][^\n]*) Nan$/gm, '$1 NaN');
}

/**
 * Serve `registry` on `GET /metrics` (and HEAD) with its content type; any other path
 * is 404. Resolves once the server listens; rejects with a FatalError if it cannot
 * (port in use, no such interface).
 */
export async function serveMetrics(registry: Registry<RegistryContentType>, options: ServeMetricsOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const { signal } = options;
  if (signal?.aborted) throw new FatalError(`metrics server on ${host}:${options.port} not started: the run is stopping`);

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: metrics are served on /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('use GET /metrics\n');
      return;
    }
    exposition(registry).then(
      (body) => {
        res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        // a collect() callback failed; say which, rather than serve a partial page
        const message = err instanceof Error ? err.message : String(err);
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`collecting metrics failed: ${message}\n`);
      },
    );
  });

  const listening = await listen(server, { host, port: options.port, what: 'metrics', portHint: 'pick another port', hostHint: 'check the host and port' });
  const onAbort = () => void listening.close();
  signal?.addEventListener('abort', onAbort, { once: true });
  return {
    port: listening.port,
    close: () => {
      signal?.removeEventListener('abort', onAbort);
      return listening.close();
    },
  };
}

/**
 * Write `registry` to `path` for node_exporter's textfile collector, atomically: the
 * collector reads every `*.prom` file in its directory at each scrape, so it must see
 * the previous file or the new one, never half of one. The path must end in `.prom`
 * (node_exporter ignores other files) and the registry must use the Prometheus text
 * format (the collector does not read OpenMetrics).
 */
export async function writeMetricsTextfile(registry: Registry<RegistryContentType>, path: string, fs: GuardedFs): Promise<void> {
  if (!path.endsWith('.prom')) {
    throw new FatalError(`metrics textfile ${path} does not end in .prom`, {
      hint: "node_exporter's textfile collector only reads *.prom files",
    });
  }
  if (registry.contentType === Registry.OPENMETRICS_CONTENT_TYPE) {
    throw new FatalError(`metrics textfile ${path}: the registry is set to OpenMetrics`, {
      hint: "node_exporter's textfile collector reads the Prometheus text format; use a registry with the default content type",
    });
  }
  await fs.writeFileAtomic(path, await exposition(registry));
}
