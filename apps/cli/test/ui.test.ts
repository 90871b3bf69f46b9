import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalMonitor, inlineDissector } from '@cm/engine';
import { makeTestBundles, testCheckpoint, testRunSpec, type TestBundles } from '@cm/engine/src/testing';
import { freePort } from '@cm/core';
import { openStore } from '@cm/store';
import { cmWith } from './run-cm';

/** `cm ui` as a user starts it: a subprocess on a store folder, read-only, stopped by its pid. */
const CM = join(__dirname, '..', 'bin', 'cm.js');
let dir: string;
let tb: TestBundles;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-ui-cli-'));
  tb = await makeTestBundles();
  env = { CM_HOME: join(dir, 'home'), CM_BUNDLE_DIR: tb.root, CM_LOG_LEVEL: 'warn' };
  const store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'concept_monitor' });
  await store.migrate();
  const monitor = createLocalMonitor({ bundles: tb.bundles, store, dissector: inlineDissector() });
  await monitor.startRun(testRunSpec('cli-ui-run', tb.bundleId));
  for (let step = 0; step < 3; step++) await monitor.sendCheckpoint(testCheckpoint(tb.space, step));
  await monitor.endRun('completed');
  await monitor.close();
  await store.close();
}, 120_000);
afterAll(() => {
  tb?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

it('a --store folder that does not exist is an error naming it', async () => {
  const res = await cmWith(env)(['ui', '--store', join(dir, 'typo'), '--port', '0']);
  expect(res.code).not.toBe(0);
  expect(res.stderr).toContain(join(dir, 'typo'));
});

it('serves the view of a store folder on the printed URL, then stops on SIGTERM', async () => {
  const child = spawn(process.execPath, [CM, 'ui', '--store', join(dir, 'store'), '--port', '0'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const deadline = Date.now() + 60_000;
    let url: string | undefined;
    while (!url) {
      url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(stdout)?.[1];
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`cm ui did not start:\n${stdout}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(stderr).toContain(`store: chdb ${join(dir, 'store')}`);
    const runs = (await (await fetch(`${url}api/runs`)).json()) as {
      runs: { runId: string; checkpoints: number }[];
    };
    expect(runs.runs.map((r) => [r.runId, r.checkpoints])).toEqual([['cli-ui-run', 3]]);
    const page = await fetch(`${url}runs/cli-ui-run/layers/conv1/neurons/2`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/assets/app.js');
    expect((await fetch(`${url}runs/nope`)).status).toBe(404);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
}, 90_000);

it('cm demo serves the view from its own process while it trains, and says how to reopen it', async () => {
  const port = await freePort();
  const home = join(dir, 'demo-home');
  const child = spawn(
    process.execPath,
    [
      CM,
      'demo',
      '--steps',
      '20',
      '--every',
      '10',
      '--count',
      '240',
      '--probe-images',
      '120',
      '--run-id',
      'demo-ui',
    ],
    {
      env: { ...process.env, CM_HOME: home, CM_LOG_LEVEL: 'warn', CM_UI_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const seen: { status: string; checkpoints: number }[] = [];
  try {
    const url = `http://127.0.0.1:${port}/`;
    const deadline = Date.now() + 200_000;
    while (child.exitCode === null && Date.now() < deadline) {
      if (stdout.includes(`View: ${url}`)) {
        const res = await fetch(`${url}api/runs`).catch(() => undefined);
        const runs = res?.ok
          ? ((await res.json()) as { runs: { runId: string; status: string; checkpoints: number }[] }).runs
          : [];
        const run = runs.find((r) => r.runId === 'demo-ui');
        if (run) seen.push({ status: run.status, checkpoints: run.checkpoints });
      }
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await exited).toBe(0);
    // the URL comes first (before training: the page saw the run running), then the summary
    expect(stdout.indexOf(`View: ${url}`)).toBeGreaterThanOrEqual(0);
    expect(stdout.indexOf(`View: ${url}`)).toBeLessThan(
      stdout.indexOf('Concept-Monitor demo (standard) finished'),
    );
    expect(seen.some((s) => s.status === 'running' && s.checkpoints > 0)).toBe(true);
    expect(stdout).toMatch(/npx cm ui +# the web view again/);
    expect(stderr).not.toMatch(/error/i);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}, 240_000);
