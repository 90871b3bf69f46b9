/**
 * Label retention benchmark (issue 17): what a thinning pass costs on a large neuron_labels table,
 * and what it buys the queries of the web view.
 *
 *   npm run bench:retention [-- --rows 2000000 --stores server,chdb --keep-every 10 --full-days 30]
 *
 * For each store (clickhouse-server 18.16 started here on free 127.0.0.1 ports, embedded chDB in
 * this process) it writes one run of `--rows` label rows server-side (INSERT ... SELECT FROM
 * numbers(): 4 layers of 512 neurons, a checkpoint every 10 steps spread over the last 90 days),
 * with its layer_metrics and checkpoints rows, then prints:
 *   - the planning read of a pass (thinLabels --dry-run: the GROUP BYs over neuron_labels),
 *   - the pass itself (the mutation, waiting until the rows are gone, the record),
 *   - label rows before and after, layer_metrics rows (must not change),
 *   - a rerun (a no-op: planning read only),
 *   - the time of two whole-run questions of the web view before and after (the switching
 *     neurons of a layer, and one neuron's history: libs/queries, as libs/ui asks them).
 * The load average is printed: on the shared 2-core machine figures mean little without it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Q from '@cm/queries';
import { freePort, setLogLevel } from '@cm/core';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import { openStore, thinLabels, type RetentionPolicy, type Store } from '@cm/store';
import { arg, argText, loadText as load } from './args';

const seconds = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t0 = performance.now();
  const out = await f();
  return [out, (performance.now() - t0) / 1000];
};

const RUN = 'bench-retention';
const LAYERS = 4;
const WIDTH = 512;
const PER_CHECKPOINT = LAYERS * WIDTH;

async function fill(store: Store, rows: number, nowS: number): Promise<number> {
  const checkpoints = Math.max(2, Math.floor(rows / PER_CHECKPOINT));
  const spanS = 90 * 86400;
  // checkpoint c at step c * 10, written spanS * (1 - c / checkpoints) seconds before now
  const timeOf = (c: string): string =>
    `toDateTime(${nowS} - ${spanS} + intDiv(${c} * ${spanS}, ${checkpoints}))`;
  await store.execute(`INSERT INTO neuron_labels (run_id, layer, step, neuron, concept, category, score, interpretable, dead, top_concepts, top_scores, x, y, time, time_ms)
SELECT '${RUN}', concat('layer', toString(intDiv(number % ${PER_CHECKPOINT}, ${WIDTH}))), toUInt32(intDiv(number, ${PER_CHECKPOINT}) * 10),
  toUInt32(number % ${WIDTH}), concat('concept', toString((number * 7 + intDiv(number, ${PER_CHECKPOINT * 50})) % 300)), 'object',
  toFloat32(0.1), 1, 0, ['a', 'b', 'c', 'd', 'e'], [toFloat32(0.3), toFloat32(0.2), toFloat32(0.1), toFloat32(0.05), toFloat32(0.01)],
  toFloat32(number % 97), toFloat32(number % 89), ${timeOf(`intDiv(number, ${PER_CHECKPOINT})`)}, toUInt64(${timeOf(`intDiv(number, ${PER_CHECKPOINT})`)}) * 1000
FROM numbers(${checkpoints * PER_CHECKPOINT})`);
  await store.execute(`INSERT INTO layer_metrics (run_id, layer, step, neurons, interpretable_fraction, mean_top_score, distinct_concept_share, label_entropy, embedding_spread, dead_fraction, switches, switch_fraction, threshold, \`category_shares.category\`, \`category_shares.share\`, \`top_concepts.concept\`, \`top_concepts.count\`, time, time_ms)
SELECT '${RUN}', concat('layer', toString(number % ${LAYERS})), toUInt32(intDiv(number, ${LAYERS}) * 10), ${WIDTH}, 0.5, 0.2, 0.4, 0.7, 0.3, 0.01, 3, 0.1, 0.05,
  ['object'], [1.0], ['concept1'], [toUInt32(3)], ${timeOf(`intDiv(number, ${LAYERS})`)}, toUInt64(${timeOf(`intDiv(number, ${LAYERS})`)}) * 1000
FROM numbers(${checkpoints * LAYERS})`);
  await store.execute(`INSERT INTO checkpoints (run_id, step, \`metrics.name\`, \`metrics.value\`, time, time_ms)
SELECT '${RUN}', toUInt32(number * 10), ['loss'], [1 / (number + 1)], ${timeOf('number')}, toUInt64(${timeOf('number')}) * 1000
FROM numbers(${checkpoints})`);
  return checkpoints;
}

async function count(store: Store, sql: string): Promise<number> {
  return Number((await store.query<{ n: string }>(sql))[0].n);
}

async function questions(store: Store): Promise<string> {
  const [, switching] = await seconds(() =>
    store.query(Q.switchingNeuronsSql({ run: RUN, layer: 'layer1', limit: 15 })),
  );
  const [, history] = await seconds(() =>
    store.query(Q.neuronHistorySql({ run: RUN, layer: 'layer1', neuron: 7, withTopImages: true })),
  );
  return `switching neurons of a layer ${switching.toFixed(2)} s, a neuron's history ${history.toFixed(2)} s`;
}

async function bench(kind: 'server' | 'chdb', rows: number, policy: RetentionPolicy): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-retention-'));
  let server: ManagedServer | undefined;
  let store: Store | undefined;
  try {
    if (kind === 'server') {
      server = await startClickHouse({
        dir: join(dir, 'server'),
        httpPort: await freePort(),
        tcpPort: await freePort(),
      });
      store = await openStore({
        kind: 'server',
        url: server.url,
        user: 'default',
        password: '',
        database: 'cm_bench',
      });
    } else store = await openStore({ kind: 'chdb', path: join(dir, 'chdb'), database: 'cm_bench' });
    await store.migrate();
    const name =
      kind === 'server' ? `clickhouse-server ${store.serverVersion}` : `chDB ${store.serverVersion}`;
    const nowS = Math.floor(Date.now() / 1000);
    const [checkpoints, fillS] = await seconds(() => fill(store!, rows, nowS));
    const labels = () => count(store!, `SELECT count() AS n FROM neuron_labels FINAL`);
    const metrics = () => count(store!, `SELECT count() AS n FROM layer_metrics FINAL`);
    const before = await labels();
    const metricsBefore = await metrics();
    console.log(
      `${name}: ${before.toLocaleString('en-US')} label rows, ${checkpoints} checkpoints written in ${fillS.toFixed(1)} s (load ${load()})`,
    );
    console.log(`  before: ${await questions(store)}`);
    const [dry, planS] = await seconds(() => thinLabels(store!, policy, { dryRun: true }));
    const planned = dry.plan.reduce((n, p) => n + p.removeSteps.length, 0);
    console.log(
      `  planning read (dry run): ${planS.toFixed(2)} s, ${planned} of ${checkpoints} checkpoints' labels to remove`,
    );
    const [pass, passS] = await seconds(() => thinLabels(store!, policy));
    const removed = pass.records.reduce((n, r) => n + r.rowsRemoved, 0);
    const after = await labels();
    const metricsAfter = await metrics();
    console.log(
      `  pass: ${passS.toFixed(2)} s, ${removed.toLocaleString('en-US')} label rows removed (${((removed / Math.max(1, passS)) | 0).toLocaleString('en-US')} rows/s); ${after.toLocaleString('en-US')} left; layer_metrics ${metricsBefore} -> ${metricsAfter} (load ${load()})`,
    );
    if (after !== before - removed || metricsAfter !== metricsBefore) {
      console.log('  FAIL: rows left do not add up, or layer_metrics changed');
      process.exitCode = 1;
    }
    const [again, againS] = await seconds(() => thinLabels(store!, policy));
    console.log(
      `  rerun: ${againS.toFixed(2)} s, ${again.plan.length === 0 ? 'no-op' : `FAIL: planned ${again.plan.length} runs`}`,
    );
    if (again.plan.length > 0) process.exitCode = 1;
    console.log(`  after:  ${await questions(store)}`);
  } finally {
    await store?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const rows = arg('rows', 2_000_000);
  const policy: RetentionPolicy = {
    fullDays: arg('full-days', 30),
    fullCheckpoints: arg('full-checkpoints', 0),
    keepEvery: arg('keep-every', 10),
  };
  console.log(
    `bench:retention: ${rows.toLocaleString('en-US')} label rows over 90 days, policy ${JSON.stringify(policy)}`,
  );
  for (const kind of argText('stores', 'server,chdb').split(',') as ('server' | 'chdb')[])
    await bench(kind, rows, policy);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
