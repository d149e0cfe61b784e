/**
 * Our MurmurHash3_x86_32 against ClickHouse's `murmurHash3_32` (embedded chDB) on
 * thousands of random byte strings of every length up to 80 (so every tail length and
 * several blocks), in one query.
 */
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { murmurHash3_32 } from '../../sources/rpm/murmur3.ts';

it('matches ClickHouse murmurHash3_32 on 3,000 random inputs', async () => {
  const { query } = await import('chdb');
  const inputs = Array.from({ length: 3000 }, (_, i) => randomBytes(i % 81));
  const list = inputs.map((b) => `'${b.toString('hex')}'`).join(',');
  const csv = query(`SELECT murmurHash3_32(unhex(x)) FROM (SELECT arrayJoin([${list}]) AS x)`, 'CSV');
  const theirs = csv.trim().split('\n').map(Number);
  expect(theirs.length).toBe(inputs.length);
  expect(inputs.map((b) => murmurHash3_32(b))).toEqual(theirs);
});

it('known values: empty input, "hello", and a seed', () => {
  expect(murmurHash3_32(Buffer.alloc(0))).toBe(0);
  expect(murmurHash3_32(Buffer.from('hello'))).toBe(613153351);
  expect(murmurHash3_32(Buffer.alloc(0), 1)).toBe(0x514e28b7); // the reference implementation's test vector
});
