/**
 * Password hashes: scrypt (node:crypto) with a random 16-byte salt, stored as
 * `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can be raised later and old
 * hashes still verify. Verification compares in constant time.
 *
 * @example
 * ```ts
 * const stored = await hashPassword('correct horse');
 * await verifyPassword('correct horse', stored); // true
 * ```
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const COST = { N: 1 << 15, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, KEY_LENGTH, { ...COST, maxmem: 128 * COST.N * COST.r * 2 });
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const N = Number(n);
  const key = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, { N, r: Number(r), p: Number(p), maxmem: 128 * N * Number(r) * 2 });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** Rules for a new password: long enough to be worth hashing. */
export function passwordProblem(password: string): string | undefined {
  if (password.length < 8) return 'a password needs at least 8 characters';
  if (password.length > 1024) return 'a password may have at most 1024 characters';
  return undefined;
}
