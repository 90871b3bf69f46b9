/**
 * The SDK as a user outside this repository gets it: `npm pack` of concept-monitor (tools/sdk/pack.ts),
 * installed with @tensorflow/tfjs into a temporary project outside the workspace, and a plain
 * script there that imports only 'concept-monitor' and '@tensorflow/tfjs' and calls watch() on a
 * tiny model twice: against a `cm serve` subprocess, and all-in-one into its own embedded store.
 * Rows landed in both stores; the declared types resolve for a TypeScript user.
 * Slow (an npm install from the local cache): bounded by the timeouts below.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TABLES } from '@cm/contracts';
import { makeSyntheticBundle, writeBundleInto } from '@cm/probe';
import { openStore, sqlString } from '@cm/store';
import { packSdk } from '../../../tools/sdk/pack';
import { startServe, type ServeProcess } from './serve-process';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..', '..');
const work = mkdtempSync(join(tmpdir(), 'cm-sdk-user-'));
const project = join(work, 'project');
let serve: ServeProcess | undefined;
afterAll(async () => {
  await serve?.stop('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

const USER_SCRIPT = `
const tf = require('@tensorflow/tfjs');
const { watch } = require('concept-monitor');

function model() {
  return tf.sequential({ layers: [
    tf.layers.conv2d({ inputShape: [32, 32, 3], filters: 4, kernelSize: 3, activation: 'relu', name: 'c1' }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.conv2d({ filters: 6, kernelSize: 3, activation: 'relu', name: 'c2' }),
    tf.layers.flatten(),
    tf.layers.dense({ units: 3, name: 'out' }),
  ] });
}

async function main() {
  const [probe, target, store] = process.argv.slice(2);
  const out = {};
  for (const [name, where] of [['served', { target }], ['local', { store }]]) {
    const m = model();
    const before = tf.memory().numTensors;
    const watcher = await watch(m, { probe, every: 5, runId: 'sdk-' + name, ...where });
    for (let step = 0; step <= 10; step++) await watcher.step(step, { loss: 1 / (step + 1) });
    const stats = await watcher.close();
    out[name] = { layers: watcher.layers.map((l) => l.name), stats, leaked: tf.memory().numTensors - before };
  }
  process.stdout.write(JSON.stringify(out));
}
main().catch((e) => { console.error(e); process.exit(1); });
`;

const TYPED_SCRIPT = `
import * as tf from '@tensorflow/tfjs';
import { watch, type WatchStats, type Watcher } from 'concept-monitor';
export async function typed(model: tf.LayersModel): Promise<WatchStats> {
  const w: Watcher = await watch(model, { probe: 'bundle', every: 100, target: '127.0.0.1:50051', policy: 'drop' });
  await w.step(0, { loss: 1 });
  return w.close();
}
`;

it('packs, installs outside the workspace and runs watch() there; rows land in the stores', async () => {
  const tarball = await packSdk(join(work, 'dist'));
  expect(tarball).toMatch(/concept-monitor-\d+\.\d+\.\d+\.tgz$/);
  const pkg = JSON.parse(
    (await run('tar', ['xzf', tarball, '-O', 'package/package.json'], { encoding: 'utf8' })).stdout,
  ) as { peerDependencies: Record<string, string>; dependencies: Record<string, string>; types: string };
  expect(pkg.peerDependencies).toEqual({ '@tensorflow/tfjs': '4.22.0' });
  expect(Object.keys(pkg.dependencies)).toEqual(expect.arrayContaining(['chdb', '@grpc/grpc-js']));
  expect(Object.keys(pkg.dependencies).some((d) => d.startsWith('@cm/'))).toBe(false);

  const { mkdirSync } = await import('node:fs');
  mkdirSync(project, { recursive: true });
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'user-project', version: '1.0.0', private: true }),
  );
  // The same lock as every npm install on this machine: two installs never overlap.
  await run(
    'flock',
    [
      '/tmp/npm.lock',
      'npm',
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
      '@tensorflow/tfjs@4.22.0',
    ],
    { cwd: project, timeout: 420_000, env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } },
  );
  const installed = JSON.parse(
    readFileSync(join(project, 'node_modules', 'concept-monitor', 'package.json'), 'utf8'),
  );
  expect(installed.name).toBe('concept-monitor');

  const home = join(work, 'home');
  const { dir: probe } = await writeBundleInto(
    join(home, 'bundles'),
    makeSyntheticBundle({ images: 120, seed: 7 }),
  );
  serve = await startServe({ CM_HOME: home }, ['--workers', '1']);
  writeFileSync(join(project, 'train.js'), USER_SCRIPT);
  const localStore = join(work, 'user-store');
  const { stdout } = await run(process.execPath, ['train.js', probe, serve.target, localStore], {
    cwd: project,
    // Nothing of the workspace: only what the user's project installed.
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CM_HOME: join(work, 'user-home'),
      CM_LOG_LEVEL: 'warn',
    },
    timeout: 240_000,
  });
  const out = JSON.parse(stdout) as Record<
    string,
    { layers: string[]; stats: { acknowledged: number; checkpoints: number }; leaked: number }
  >;
  for (const name of ['served', 'local']) {
    expect(out[name].layers).toEqual(['c1', 'c2', 'out']);
    expect(out[name].stats).toMatchObject({ checkpoints: 3, acknowledged: 3 });
    expect(out[name].leaked).toBe(0);
  }
  expect((await serve.stop()).code).toBe(0);
  serve = undefined;

  const width = 4 + 6 + 3;
  for (const [path, runId] of [
    [join(home, 'store'), 'sdk-served'],
    [localStore, 'sdk-local'],
  ]) {
    const store = await openStore({ kind: 'chdb', path, database: 'concept_monitor' });
    try {
      const rows = await store.query<{ n: string; distinct: string }>(
        `SELECT count() AS n, uniqExact(layer, step, neuron) AS distinct FROM ${TABLES.neuronLabels} WHERE run_id = ${sqlString(runId)}`,
      );
      expect(Number(rows[0].n)).toBe(3 * width);
      expect(Number(rows[0].distinct)).toBe(3 * width);
    } finally {
      await store.close();
    }
  }

  // A TypeScript user: the declared types resolve and check against the user's code.
  writeFileSync(join(project, 'typed.ts'), TYPED_SCRIPT);
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: 'commonjs',
        target: 'ES2022',
        moduleResolution: 'node',
        esModuleInterop: true,
        skipLibCheck: true,
        types: [],
      },
      files: ['typed.ts'],
    }),
  );
  await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], {
    cwd: project,
    timeout: 120_000,
  });
}, 900_000);
