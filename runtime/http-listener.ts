/**
 * Start a node:http server on host:port and get back its port, a URL to reach it and a
 * `close` that ends keep-alive connections too (so a stopping daemon does not wait for
 * idle clients). Shared by the metrics endpoint, the daemon's endpoints and the admin API.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FatalError } from './errors.ts';

export interface Listening {
  readonly port: number;
  /** http://host:port, with a wildcard host shown as 127.0.0.1 */
  readonly url: string;
  /** stop listening and drop open connections; safe to call more than once */
  close(): Promise<void>;
}

/**
 * @param what  for the error: "the admin API", "metrics"…
 * @param portHint  what to change when the port is taken, e.g. "choose another --admin-port"
 */
export async function listen(server: Server, options: { host: string; port: number; what: string; portHint: string; hostHint: string }): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new FatalError(`cannot serve ${options.what} on ${options.host}:${options.port}: ${err.code ?? err.message}`, {
        hint: err.code === 'EADDRINUSE' ? `another process listens there: ${options.portHint} (0 = any free port)` : options.hostHint,
        cause: err,
      }));
    };
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
