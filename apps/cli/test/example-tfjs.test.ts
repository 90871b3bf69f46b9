/**
 * tools/examples/tfjs-watch.ts as a user runs it, briefly: a small tfjs model trained on the
 * synthetic world's splits (written as `cm probe make --splits-out` does), monitored with watch()
 * against a `cm serve` subprocess; every checkpoint's labels are in the store afterwards.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TABLES } from '@cm/contracts';
import { makeSyntheticBundle, writeBundleInto } from '@cm/probe';
import { openStore, sqlString } from '@cm/store';
import { loadTrainTest, writeDatasetSplits } from '@cm/train';
import { startServe, type ServeProcess } from './serve-process';

const ROOT = join(__dirname, '..', '..', '..');
const home = mkdtempSync(join(tmpdir(), 'cm-example-'));
let serve: ServeProcess | undefined;
afterAll(async () => {
  await serve?.stop('SIGKILL');
  rmSync(home, { recursive: true, force: true });
});

it('trains 20 steps monitored through cm serve; checkpoints 0, 10, 20 land in the store', async () => {
  const { dir: probe } = await writeBundleInto(
    join(home, 'bundles'),
    makeSyntheticBundle({ images: 120, seed: 7 }),
  );
  const { train, test } = await loadTrainTest({ kind: 'world', task: 'shape', count: 400, seed: 1 }, 0.25, 1);
  const splits = writeDatasetSplits(join(home, 'world'), train, test);
  serve = await startServe({ CM_HOME: home }, ['--workers', '1']);
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'tools/examples/tfjs-watch.ts'),
      '--probe',
      probe,
      '--splits',
      splits,
      '--target',
      serve.target,
      '--steps',
      '20',
      '--every',
      '10',
      '--run-id',
      'example-run',
    ],
    { cwd: ROOT, env: { ...process.env, CM_HOME: home, CM_LOG_LEVEL: 'warn' }, timeout: 240_000 },
  );
  expect(stdout).toMatch(/run example-run: monitoring block1, block2, logits/);
  expect(stdout).toMatch(/3\/3 checkpoints acknowledged/);
  expect((await serve.stop()).code).toBe(0);
  serve = undefined;
  const store = await openStore({ kind: 'chdb', path: join(home, 'store'), database: 'concept_monitor' });
  try {
    const rows = await store.query<{ step: string; n: string }>(
      `SELECT step, count() AS n FROM ${TABLES.neuronLabels} WHERE run_id = ${sqlString('example-run')} GROUP BY step ORDER BY step`,
    );
    expect(rows.map((r) => [Number(r.step), Number(r.n)])).toEqual([
      [0, 16 + 32 + 8],
      [10, 16 + 32 + 8],
      [20, 16 + 32 + 8],
    ]);
  } finally {
    await store.close();
  }
}, 300_000);
