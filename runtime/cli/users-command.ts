/**
 * `npm run pipeline -- users …` (also `sluice users …`): the admin API's users.
 *
 *   users add <name> --role admin|operator|viewer   create a user, or set an existing user's role and password
 *   users list                                      names and roles
 *   users remove <name>
 *
 * The password is read from standard input — typed twice, unechoed, on a terminal;
 * the first line of a pipe otherwise (`printf '%s\n' "$PW" | npm run pipeline -- users
 * add alice --role admin`) — never from the command line, where `ps` and shell history
 * would show it. It is stored as a scrypt hash; the change goes to the audit table.
 * Users live in the state store: with the embedded store, run this while no daemon
 * holds it (or use `POST /api/users` on a running daemon).
 */
import os from 'node:os';
import path from 'node:path';
import { openStore, storeConfigFromEnv } from '../clickhouse/open-store.ts';
import type { ClickHouseStore } from '../clickhouse/store.ts';
import { AdminStore, ROLES, type Role } from '../admin/admin-store.ts';
import { hashPassword, passwordProblem } from '../admin/password.ts';
import { describeError, FatalError, SluiceError } from '../errors.ts';
import { flagString, parseArgs, UsageError } from './args.ts';

export const USERS_USAGE = `usage: npm run pipeline -- users <command>

  users add <name> --role admin|operator|viewer   create a user (or set its role and password); the password is read from stdin
  users list                                      users and their roles
  users remove <name>                             remove a user

  --state-dir DIR          the state directory of the embedded store (default .sluice, or $SLUICE_STATE_DIR)
  --clickhouse-url URL     a ClickHouse server as the store ($SLUICE_CLICKHOUSE_URL)

Roles: admin (everything), operator (run now, enable/disable schedules, read), viewer (read).
`;

const FLAGS = { help: {}, role: { value: true }, 'state-dir': { value: true }, 'clickhouse-url': { value: true }, password: { value: true } };

export async function main(argv: string[]): Promise<number> {
  try {
    return await users(argv);
  } catch (err) {
    if (err instanceof SluiceError) {
      process.stderr.write(`sluice users: ${describeError(err)}\n`);
      return 1;
    }
    throw err;
  }
}

async function users(argv: string[]): Promise<number> {
  const args = parseArgs(argv, FLAGS);
  const [sub, name, ...extra] = args.positional;
  if (args.flags.has('help') || !sub) {
    process.stdout.write(USERS_USAGE);
    return sub || args.flags.has('help') ? 0 : 2;
  }
  if (args.flags.has('password')) throw new UsageError('--password is not accepted: a password on the command line shows in ps and shell history; give it on stdin');
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  switch (sub) {
    case 'add': {
      if (!name) throw new UsageError('users add needs a name: users add <name> --role admin|operator|viewer');
      if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/.test(name)) throw new UsageError(`"${name}" is not a user name (letters, digits, ".", "_", "@", "-"; at most 64)`);
      const role = flagString(args, 'role') as Role | undefined;
      if (!role || !ROLES.includes(role)) throw new UsageError(`users add needs --role ${ROLES.join('|')}${role ? `, not "${role}"` : ''}`);
      const password = await readPassword();
      const problem = passwordProblem(password);
      if (problem) throw new FatalError(problem);
      const hash = await hashPassword(password);
      return withAdmin(args, async (admin) => {
        const existing = await admin.user(name);
        await admin.putUser({ name, role, passwordHash: hash, createdAt: existing?.createdAt });
        await admin.audit({ user: `cli:${os.userInfo().username}`, action: 'putUser', target: name, outcome: 'ok', details: { role, via: 'users add' } });
        process.stdout.write(`${existing ? 'updated' : 'added'} user ${name} (${role})\n`);
        return 0;
      });
    }
    case 'list':
      if (name) throw new UsageError(`unexpected argument "${name}"`);
      return withAdmin(args, async (admin) => {
        const list = await admin.users();
        if (!list.length) process.stdout.write('no users (add one: npm run pipeline -- users add <name> --role admin)\n');
        for (const u of list) process.stdout.write(`${u.name}\t${u.role}\t${u.createdAt}\n`);
        return 0;
      });
    case 'remove':
      if (!name) throw new UsageError('users remove needs a name');
      return withAdmin(args, async (admin) => {
        if (!(await admin.user(name))) {
          process.stderr.write(`sluice users: no user "${name}"\n`);
          return 1;
        }
        await admin.removeUser(name);
        await admin.audit({ user: `cli:${os.userInfo().username}`, action: 'removeUser', target: name, outcome: 'ok', details: { via: 'users remove' } });
        process.stdout.write(`removed user ${name}\n`);
        return 0;
      });
    default:
      throw new UsageError(`unknown users command "${sub}"; commands: add, list, remove`);
  }
}

async function withAdmin(args: ReturnType<typeof parseArgs>, fn: (admin: AdminStore) => Promise<number>): Promise<number> {
  const stateDir = path.resolve(flagString(args, 'state-dir') ?? process.env.SLUICE_STATE_DIR ?? '.sluice');
  let store: ClickHouseStore;
  try {
    store = await openStore(storeConfigFromEnv(process.env, { url: flagString(args, 'clickhouse-url') }), { stateDir });
  } catch (err) {
    if (err instanceof FatalError && /in use|lock/i.test(err.message)) {
      throw new FatalError(err.message, { hint: 'a daemon holds the embedded store: stop it for this, or use POST /api/users on its admin API' });
    }
    throw err;
  }
  try {
    return await fn(new AdminStore(store));
  } finally {
    await store.close();
  }
}

/** The password from stdin: asked twice without echo on a terminal, else the first line. */
async function readPassword(): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of stdin) chunks.push(chunk as Buffer);
    const first = Buffer.concat(chunks).toString('utf8').split('\n')[0]!.replace(/\r$/, '');
    if (!first) throw new FatalError('no password on stdin', { hint: "pipe it in: printf '%s\\n' \"$PASSWORD\" | npm run pipeline -- users add NAME --role ROLE" });
    return first;
  }
  const once = await ask('password: ');
  const again = await ask('again: ');
  if (once !== again) throw new FatalError('the two passwords differ');
  return once;
}

function ask(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let text = '';
    const onData = (data: Buffer) => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          resolve(text);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new FatalError('cancelled'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else text += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}
