/**
 * `parseServerAddress`: what a user writes for a stratum server (`host`, `host:port`,
 * `https://host`, `http://[::1]:8080`) → its base URL, its `host:port` (what `net`
 * permissions take) and the `server` label of its metrics.
 *
 * Labels: the old exporter labelled a server with the first two DNS labels of its name
 * (`rug-nl.stratum1.cvmfs.eessi-infra.org` → `rug-nl.stratum1`); `short` keeps that, so
 * dashboards and alerts written for it keep working. An IP address keeps its whole
 * address, and a port other than the scheme's default is appended (`127.0.0.1:8000`).
 * `host` labels with the full host name (plus a non-default port).
 *
 * @example
 * ```ts
 * parseServerAddress('rug-nl.stratum1.cvmfs.eessi-infra.org');
 * // { base: 'http://rug-nl.stratum1.cvmfs.eessi-infra.org', hostPort: '…:80', label: 'rug-nl.stratum1', … }
 * ```
 */
import { isIP } from 'node:net';
import { FatalError } from '../../../runtime/errors.ts';

export type ServerLabelStyle = 'short' | 'host';

export interface ServerAddress {
  /** as the user wrote it */
  spec: string;
  /** `http[s]://host[:port]`, no trailing slash */
  base: string;
  /** host name or address, without brackets */
  host: string;
  /** `host:port` with the scheme's port filled in */
  hostPort: string;
  /** the `server` label */
  label: string;
}

export function parseServerAddress(spec: string, style: ServerLabelStyle = 'short'): ServerAddress {
  const text = spec.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new FatalError(`stratum server ${JSON.stringify(spec)} is not a host, host:port or URL`, { hint: 'e.g. s1.example.org, s1.example.org:8000 or https://s1.example.org' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FatalError(`stratum server ${JSON.stringify(spec)}: scheme ${url.protocol} is not http or https`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.username) {
    throw new FatalError(`stratum server ${JSON.stringify(spec)}: give the server only (scheme, host, port), not a path`, { hint: 'the scraper adds /cvmfs/… itself' });
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  const port = url.port || defaultPort;
  const bracketed = isIP(host) === 6 ? `[${host}]` : host;
  const portSuffix = url.port && url.port !== defaultPort ? `:${url.port}` : '';
  const name = style === 'host' || isIP(host) ? host : host.split('.').slice(0, 2).join('.');
  return {
    spec,
    base: `${url.protocol}//${bracketed}${url.port ? `:${url.port}` : ''}`,
    host,
    hostPort: `${bracketed}:${port}`,
    label: `${name}${portSuffix}`,
  };
}

/** Two servers with one label would mix their series: refuse, naming both. */
export function checkDistinctLabels(addresses: readonly ServerAddress[]): void {
  const byLabel = new Map<string, ServerAddress>();
  for (const a of addresses) {
    const other = byLabel.get(a.label);
    if (other && other.base !== a.base) {
      throw new FatalError(`stratum servers ${other.spec} and ${a.spec} would both be labelled server="${a.label}"`, {
        hint: 'use --param serverLabel=host to label servers by their full host name',
      });
    }
    byLabel.set(a.label, a);
  }
}
