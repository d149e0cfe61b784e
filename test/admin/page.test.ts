/**
 * The web page in headless Chromium (Debian's `chromium`, driven by playwright-core):
 * load it from a running daemon, fail to log in with a wrong password, log in as an
 * operator, enable a schedule with its button and see its run appear in the runs
 * table, disable it again, log out.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseStore } from '../../runtime/clickhouse/store.ts';
import { Broker, names, testStore, type Names } from '../daemon/support.ts';
import { addUser, api, basic, scheduleEnv, startAdminDaemon, until, type AdminDaemon } from '../scheduler/support.ts';

const CHROMIUM = process.env.SLUICE_TEST_CHROMIUM ?? '/usr/bin/chromium';
let n: Names;
let broker: Broker;
let store: ClickHouseStore;
let dropDb: () => Promise<void>;
let d: AdminDaemon;
let context: BrowserContext;
let page: Page;
let profile: string;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y chromium) or set SLUICE_TEST_CHROMIUM`);
  n = names('page');
  broker = await Broker.open();
  ({ store, drop: dropDb } = await testStore(n));
  const env = scheduleEnv(n);
  for (const [user, role, pw] of [['root', 'admin', 'root-password-1'], ['ops', 'operator', 'ops-password-1']] as const) {
    const r = await addUser(env, user, role, pw);
    expect(r.code, r.stderr).toBe(0);
  }
  d = await startAdminDaemon(env);
  const added = await api(d.admin, 'POST', '/api/schedules', basic('root', 'root-password-1'), { id: 'page-sched', pipeline: 'nap', params: { label: 'from the page' }, cron: '*/2 * * * * *', enabled: false });
  expect(added.status, JSON.stringify(added.body)).toBe(201);
  profile = await mkdtemp(path.join(os.tmpdir(), 'sluice-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => pageErrors.push(err.message));
}, 180_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  if (profile) await rm(profile, { recursive: true, force: true });
  if (d) {
    d.kill('SIGTERM');
    expect((await d.exited).code, d.log()).toBe(0);
  }
  await broker?.cleanup(n);
  await broker?.close();
  await dropDb?.();
}, 120_000);

describe('the web page', () => {
  it('loads, refuses a wrong password, logs in, toggles a schedule, shows its run', async () => {
    await page.goto(`${d.admin}/`);
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.title()).toBe('sluice');

    await page.fill('#user', 'ops');
    await page.fill('#password', 'not-the-password');
    await page.click('#login-button');
    await expect.poll(() => page.textContent('#login-error'), { timeout: 20_000 }).toMatch(/Login failed: wrong, unknown or expired credentials/);

    await page.fill('#password', 'ops-password-1');
    await page.click('#login-button');
    await page.locator('#app').waitFor({ state: 'visible', timeout: 20_000 });
    expect(await page.textContent('#who')).toBe('ops (operator)');
    // pipelines with their params
    await page.locator('tr[data-pipeline="nap"]').waitFor({ timeout: 20_000 });
    expect(await page.textContent('tr[data-pipeline="nap"]')).toContain('ms, label');

    // the schedule is disabled: enable it with its button
    const state = page.locator('[data-testid="state-page-sched"]');
    await state.waitFor({ timeout: 20_000 });
    expect(await state.textContent()).toBe('disabled');
    await page.click('[data-testid="toggle-page-sched"]');
    await expect.poll(() => state.textContent(), { timeout: 20_000 }).toBe('enabled');

    // its run appears in the runs table (the page polls), succeeded
    const run = page.locator('tr[data-trigger^="schedule:page-sched:"]').first();
    await run.waitFor({ timeout: 60_000 });
    await expect.poll(async () => (await page.locator('tr[data-trigger^="schedule:page-sched:"] .badge.succeeded').count()) > 0, { timeout: 30_000 }).toBe(true);
    expect(await run.textContent()).toContain('nap');
    expect(await run.textContent()).toContain('schedule');
    expect(await page.locator('#chart rect').count()).toBeGreaterThan(0);

    // disable it again; the API agrees
    await page.click('[data-testid="toggle-page-sched"]');
    await expect.poll(() => state.textContent(), { timeout: 20_000 }).toBe('disabled');
    const s = await api<{ enabled: boolean; updatedBy: string }>(d.admin, 'GET', '/api/schedules/page-sched', basic('ops', 'ops-password-1'));
    expect(s.body).toMatchObject({ enabled: false, updatedBy: 'ops' });
    const runs = await until('the run record', async () => {
      const rows = await store.query<{ trigger: string }>(`SELECT trigger FROM sluice_runs FINAL WHERE trigger_id LIKE 'schedule:page-sched:%'`);
      return rows.length ? rows : undefined;
    });
    expect(runs[0]!.trigger).toBe('schedule');

    // log out: the token is revoked, the login form is back
    const token = await page.evaluate<string | null>('sessionStorage.getItem("sluice-token")');
    await page.click('#logout');
    await page.locator('#login').waitFor({ state: 'visible' });
    expect((await api(d.admin, 'GET', '/api/me', `Bearer ${token}`)).status).toBe(401);
    expect(pageErrors).toEqual([]);
  });
});
