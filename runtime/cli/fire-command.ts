/**
 * `sluice fire` (`npm run fire`): publish a trigger message, with publisher confirms,
 * and optionally wait for its result.
 *
 * ```sh
 * npm run fire -- inventory --param root=/srv/mirror --wait --timeout 5m
 * npm run fire -- --exchange repodb-ex --routing-key repo.load --body '{"branch":"p10","date":"2022-06-22"}'
 * ```
 *
 * Exit codes: 0 published (with `--wait`: the run succeeded); 1 the run failed or the
 * message was rejected (the error is printed); 2 usage, params or config error; 3 the message
 * could not be published (broker unreachable, nothing bound for the routing key);
 * 4 `--wait` timed out (the message stays queued; a daemon may still run it).
 */
import { randomUUID } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import { AmqpConnection, describeAmqpUrl } from '../amqp/connection.ts';
import { AmqpPublisher } from '../amqp/publisher.ts';
import { configPath, loadDaemonConfig } from '../daemon/config.ts';
import { HEADERS, type TriggerReply } from '../daemon/daemon.ts';
import { formatDuration, parseDuration } from '../daemon/duration.ts';
import { describeError, SluiceError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { paramsFromArgs } from '../params-cli.ts';
import { ParamsError } from '../params-error.ts';
import { loadPipeline, PipelineLoadError } from '../pipeline-loader.ts';
import { parseParams } from '../runner.ts';
import { flagString, flagStrings, parseArgs, UsageError } from './args.ts';

const FLAGS = {
  help: {},
  param: { value: true, repeat: true },
  'params-json': { value: true },
  id: { value: true },
  wait: {},
  timeout: { value: true },
  exchange: { value: true },
  'routing-key': { value: true },
  body: { value: true },
  header: { value: true, repeat: true },
  config: { value: true },
  'amqp-url': { value: true },
  json: {},
  quiet: {},
};

export const FIRE_USAGE = `usage: npm run fire -- <pipeline> [--param key=value …] [--wait [--timeout 60s]]
       npm run fire -- --routing-key KEY --body '{…}' [--exchange NAME] [--wait]

Publish a trigger message (publisher confirms) for the daemon (npm run serve).

  --param key=value        a param (repeat for arrays); checked against the pipeline's schema when it is found here
  --params-json '{…}'      params as a JSON object (--param wins)
  --id ID                  the trigger id (the run's trigger id and the message id; default a new UUID)
  --wait                   wait for the result: exit 0 when the run succeeded, 1 with the error otherwise
  --timeout DURATION       how long --wait waits (default 60s)
  --exchange NAME          where to publish (default: the daemon's trigger exchange, sluice.triggers)
  --routing-key KEY        the routing key (default run.<pipeline>)
  --body TEXT              send TEXT as the body as it is (a routed message in another system's format)
  --header key=value       an AMQP header (repeat)
  --config FILE            the daemon's config file, for the exchange and broker (default as npm run serve)
  --amqp-url URL           the broker (default $SLUICE_AMQP_URL or the config's)
  --json                   print the result message as JSON on stdout
  --quiet                  print nothing but errors

Exit codes: 0 ok, 1 run failed or message rejected, 2 usage, params or config error, 3 not published, 4 --wait timed out.
`;

export async function main(argv: string[]): Promise<number> {
  try {
    return await fire(argv);
  } catch (err) {
    if (err instanceof SluiceError) {
      // a bad config file or URL: nothing was sent
      process.stderr.write(`sluice fire: ${describeError(err)}\n`);
      return 2;
    }
    throw err;
  }
}

/** Values without a schema: JSON numbers, booleans and null as such, everything else a string. */
function looseValue(text: string): unknown {
  if (/^(true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?)$/.test(text)) return JSON.parse(text) as unknown;
  return text;
}

async function fire(argv: string[]): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  if (args.flags.has('help')) {
    process.stdout.write(FIRE_USAGE);
    return 0;
  }
  const quiet = args.flags.has('quiet');
  const say = (line: string) => { if (!quiet) process.stderr.write(line + '\n'); };
  const [pipelineName, ...extra] = args.positional;
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"; params are given as --param key=value`);
  const rawBody = flagString(args, 'body');
  if (!pipelineName && rawBody === undefined) throw new UsageError('fire needs a pipeline name, or --body (with --routing-key) for a routed message');
  if (pipelineName && rawBody !== undefined) throw new UsageError('give a pipeline name or --body, not both');
  if (rawBody !== undefined && (args.flags.has('param') || args.flags.has('params-json'))) throw new UsageError('--param and --params-json go with a pipeline name, not with --body');
  let timeoutMs = 60_000;
  const timeoutText = flagString(args, 'timeout');
  if (timeoutText !== undefined) {
    try {
      timeoutMs = parseDuration(timeoutText, '--timeout');
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const overrides: Record<string, unknown> = {};
  const url = flagString(args, 'amqp-url');
  if (url) overrides.amqp = { url };
  const { config } = loadDaemonConfig({ file: configPath(flagString(args, 'config')), overrides });

  const id = flagString(args, 'id') ?? randomUUID();
  let body: Buffer;
  let routingKey = flagString(args, 'routing-key');
  if (pipelineName) {
    let params: Record<string, unknown>;
    try {
      const pipeline = await loadPipeline(pipelineName).catch((err: unknown) => {
        if (err instanceof PipelineLoadError && /no pipeline/.test(err.message)) return undefined;
        throw err;
      });
      if (pipeline) {
        params = paramsFromArgs(pipeline.params, flagStrings(args, 'param'), flagString(args, 'params-json'));
        parseParams(pipeline.params, params); // fail here, not in the daemon's dead-letter queue
      } else {
        say(`note: no pipeline "${pipelineName}" here; sending the params unchecked (the daemon checks them)`);
        params = {};
        const json = flagString(args, 'params-json');
        if (json !== undefined) {
          try {
            params = JSON.parse(json) as Record<string, unknown>;
          } catch (err) {
            throw new ParamsError(`--params-json is not valid JSON: ${(err as Error).message}`);
          }
          if (typeof params !== 'object' || params === null || Array.isArray(params)) throw new ParamsError('--params-json must be a JSON object');
        }
        for (const pair of flagStrings(args, 'param')) {
          const eq = pair.indexOf('=');
          if (eq <= 0) throw new ParamsError(`--param ${pair}: expected key=value`);
          const key = pair.slice(0, eq);
          const value = looseValue(pair.slice(eq + 1));
          const prior = params[key];
          params[key] = prior === undefined ? value : Array.isArray(prior) ? [...prior, value] : [prior, value];
        }
      }
    } catch (err) {
      if (err instanceof ParamsError) {
        process.stderr.write(`sluice fire: ${pipelineName}: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    body = Buffer.from(JSON.stringify({ pipeline: pipelineName, params, id }));
    routingKey ??= `run.${pipelineName}`;
  } else {
    body = Buffer.from(rawBody!);
    if (routingKey === undefined) throw new UsageError('--body needs --routing-key');
  }
  const exchange = flagString(args, 'exchange') ?? config.exchange;
  const headers: Record<string, unknown> = { [HEADERS.publishedAt]: Date.now() };
  for (const pair of flagStrings(args, 'header')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--header ${pair}: expected key=value`);
    headers[pair.slice(0, eq)] = looseValue(pair.slice(eq + 1));
  }
  let isJson = true;
  try {
    JSON.parse(body.toString('utf8'));
  } catch {
    isJson = false;
  }

  const log = createLogger({ level: process.env.SLUICE_LOG_LEVEL === 'debug' ? 'debug' : 'error' });
  const connection = new AmqpConnection({ url: config.amqp.url, heartbeatSeconds: Math.round(config.amqp.heartbeat / 1000), tls: config.amqp.tls, connectionName: `sluice fire pid ${process.pid}`, log });
  try {
    try {
      await connection.start({ attempts: 3 });
    } catch (err) {
      process.stderr.write(`sluice fire: ${describeError(err)}\n`);
      return 3;
    }
    const wait = args.flags.has('wait');
    const correlationId = randomUUID();
    let replies: AsyncQueue<TriggerReply> | undefined;
    let replyChannel: Channel | undefined;
    let replyQueue: string | undefined;
    if (wait) {
      replyChannel = await connection.createChannel();
      replyQueue = (await replyChannel.assertQueue('', { exclusive: true, autoDelete: true, durable: false })).queue;
      const queue = new AsyncQueue<TriggerReply>();
      replies = queue;
      await replyChannel.consume(replyQueue, (msg: ConsumeMessage | null) => {
        if (!msg || msg.properties.correlationId !== correlationId) return;
        try {
          queue.push(JSON.parse(msg.content.toString('utf8')) as TriggerReply);
        } catch {
          // not ours
        }
      }, { noAck: true });
    }
    const publisher = new AmqpPublisher(connection, { log });
    try {
      await publisher.publish(exchange, routingKey, body, {
        persistent: true,
        mandatory: true,
        messageId: id,
        correlationId,
        ...(replyQueue ? { replyTo: replyQueue } : {}),
        contentType: isJson ? 'application/json' : 'text/plain',
        appId: 'sluice fire',
        timestamp: Math.floor(Date.now() / 1000),
        headers,
      }, AbortSignal.timeout(30_000));
    } catch (err) {
      process.stderr.write(`sluice fire: cannot publish to ${describeAmqpUrl(config.amqp.url)}: ${describeError(err)}\n`);
      return 3;
    }
    say(`published ${id} to exchange "${exchange}" with routing key "${routingKey}"`);
    if (!replies) return 0;

    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = await replies.next(deadline - Date.now());
      if (!reply) {
        process.stderr.write(`sluice fire: no result within ${formatDuration(timeoutMs)} (the message stays queued; a daemon may still run it)\n`);
        return 4;
      }
      if (args.flags.has('json')) process.stdout.write(JSON.stringify(reply) + '\n');
      switch (reply.status) {
        case 'retrying':
          say(`attempt ${reply.attempt} failed: ${reply.error}; retrying in ${formatDuration(reply.retryInMs ?? 0)}`);
          continue;
        case 'succeeded':
          say(`${reply.pipeline ?? 'run'} succeeded (run ${reply.runId}${reply.attempt > 1 ? `, attempt ${reply.attempt}` : ''}): ${reply.counts?.items ?? 0} items, ${reply.counts?.records ?? 0} records in ${formatDuration(reply.durationMs ?? 0)}`);
          return 0;
        case 'failed':
          process.stderr.write(`sluice fire: ${reply.pipeline ?? 'the run'} failed (${reply.runId ? `run ${reply.runId}, ` : ''}attempt ${reply.attempt}): ${reply.error}\n`);
          return 1;
        case 'rejected':
          process.stderr.write(`sluice fire: the daemon rejected the message (${reply.reason}): ${reply.error}\n`);
          return 1;
        default:
          process.stderr.write(`sluice fire: unexpected result ${JSON.stringify(reply)}\n`);
          return 1;
      }
    }
  } finally {
    await connection.close();
  }
}

/** Values pushed by a callback, taken one at a time with a timeout. */
class AsyncQueue<T> {
  private readonly items: T[] = [];
  private waiter?: (value: T | undefined) => void;

  push(value: T): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(value);
    } else {
      this.items.push(value);
    }
  }

  next(timeoutMs: number): Promise<T | undefined> {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (timeoutMs <= 0) return Promise.resolve(undefined);
    return new Promise<T | undefined>((resolve) => {
      const timer = setTimeout(() => { this.waiter = undefined; resolve(undefined); }, timeoutMs);
      this.waiter = (v) => { clearTimeout(timer); resolve(v); };
    });
  }
}
