/**
 * Long-run benchmark (issue 17): one run of many checkpoints through the real pipeline into
 * clickhouse-server 18.16 and chDB, then the time of every question the web view and Grafana ask.
 *
 *   npm run bench:long-run [-- --checkpoints 10000 --layers 4 --neurons 256 --concepts 300
 *                             --stores server,chdb --repeat 5 --keep DIR]
 *   npm run bench:long-run -- --queries-only DIR [--repeat 5]   (re-time the queries of a kept store)
 *
 * 1. Generates the run checkpoint by checkpoint (tools/bench/long-run-data.ts: drifting concepts,
 *    scores, top-5 concepts, map coordinates, layer metrics from libs/dissect, records from
 *    libs/engine, alert episodes from the real collapse detector); memory stays bounded: a chunk of
 *    checkpoints is published, and publishing waits while the recorder is more than `--ahead`
 *    checkpoints behind.
 * 2. Publishes through a real nats-server JetStream (columnar label messages, what the concept
 *    service sends) and records with the real recorder (libs/recorder-consumer) into each store in
 *    turn: clickhouse-server 18.16 started here on free 127.0.0.1 ports, then chDB in this process.
 *    Between the two the stream is deleted (its duplicate window would drop the second publish).
 *    Acked messages are purged as it goes, so the stream's disk stays bounded too.
 * 3. Checks every label row is stored exactly once, prints rows/s and total time, the store's
 *    size on disk (system.parts per table, and du of the data folder).
 * 4. Times each question of the web view (libs/queries, with the arguments libs/ui/src/views.ts
 *    gives them) and every SQL of the Grafana dashboards and alert rules (libs/dashboards, expanded
 *    with template variables and macros as the dashboard tests do): median and max of `--repeat`
 *    runs, PASS when the median is within 1 s (the max is shown: on a shared machine one run in
 *    five may be slowed by another process).
 *
 * `--keep DIR` leaves both stores in DIR (DIR/server: clickhouse-server's folder, DIR/chdb, and
 * DIR/long-run.json: the run's spec), so `--queries-only DIR` re-times the queries later, on a
 * quiet machine, without ingesting again.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { connectBus, type Bus } from '@cm/bus';
import { CONSUMERS, STREAM, TABLES } from '@cm/contracts';
import { errorMessage, freePort, setLogLevel, waitFor } from '@cm/core';
import {
  expandPanelSql,
  generateFiles,
  queriesOfAlertRules,
  queriesOfDashboard,
  type ShippedQuery,
} from '@cm/dashboards';
import * as Q from '@cm/queries';
import { RecorderConsumer } from '@cm/recorder-consumer';
import { startClickHouse, startNats, type ManagedServer } from '@cm/stack';
import { openStore, sqlString, type Store } from '@cm/store';
import { HEAT_STRIP_MAX_STEPS } from '../../libs/ui/src/api-types';
import { LongRunGenerator, layerNames, type LongRunSpec } from './long-run-data';

type StoreName = 'server' | 'chdb';
const DATABASE = 'cm_long_run';
const SPEC_FILE = 'long-run.json';
const LIMIT_MS = 1000;

const argText = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
function argInt(name: string, fallback: number): number {
  const text = argText(name);
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer, got ${text}`);
  return v;
}
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const rssMib = (): string => mib(process.memoryUsage().rss);

interface Kept {
  spec: LongRunSpec;
  stores: StoreName[];
}

function serverDir(dir: string): string {
  return join(dir, 'server');
}
function chdbDir(dir: string): string {
  return join(dir, 'chdb');
}

async function startServer(dir: string): Promise<ManagedServer> {
  return startClickHouse({ dir: serverDir(dir), httpPort: await freePort(), tcpPort: await freePort() });
}

async function open(name: StoreName, dir: string, server?: ManagedServer): Promise<Store> {
  if (name === 'server') {
    if (!server) throw new Error('no clickhouse-server started');
    return openStore({ kind: 'server', url: server.url, user: 'default', password: '', database: DATABASE });
  }
  return openStore({ kind: 'chdb', path: chdbDir(dir), database: DATABASE });
}

// ---- ingest ----

interface IngestResult {
  rows: number;
  ms: number;
  alerts: number;
  recorderCpuS: number;
}

/** One pass of the whole run: generate, publish to JetStream, record into `store`; counts checked. */
async function ingest(
  name: StoreName,
  store: Store,
  bus: Bus,
  spec: LongRunSpec,
  opts: { chunk: number; ahead: number; batch: number },
): Promise<IngestResult> {
  await bus.ensureStream();
  const gen = new LongRunGenerator(spec);
  const total = gen.totalLabelRows;
  const recorder = new RecorderConsumer({ js: bus.js, jsm: bus.jsm, store, batchMessages: opts.batch });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await recorder.start();
  await bus.publishRecords([gen.runRecord('running')]);
  let published = 0;
  let alerts = 0;
  let nextReport = 0.1;
  const aheadRows = opts.ahead * spec.layers * spec.neurons;
  for (let i = 0; i < spec.checkpoints; i += opts.chunk) {
    const records = [];
    for (let j = i; j < Math.min(spec.checkpoints, i + opts.chunk); j++) {
      const c = gen.checkpoint(j);
      records.push(...c.records);
      published += c.labelRows;
      alerts += c.alerts.length;
    }
    while (published - recorder.stats.labelRows > aheadRows) {
      if (recorder.stats.failedInserts > 0 && !recorder.healthy())
        throw new Error(`recorder insert failed: ${recorder.stats.lastError ?? '?'}`);
      await sleep(10);
    }
    await bus.publishRecords(records);
    if (published / total >= nextReport) {
      nextReport += 0.1;
      const s = (performance.now() - t0) / 1000;
      console.log(
        `   ${name}: ${fmtInt(recorder.stats.labelRows)} / ${fmtInt(total)} rows stored, ${fmtInt(recorder.stats.labelRows / s)} rows/s, bench RSS ${rssMib()}, load ${load()}`,
      );
      // acked messages are history the store holds now: keep the stream's disk bounded
      const info = await bus.jsm.consumers.info(STREAM.name, CONSUMERS.recorder);
      await bus.jsm.streams.purge(STREAM.name, { seq: info.ack_floor.stream_seq + 1 });
    }
  }
  await bus.publishRecords([gen.runRecord('completed')]);
  const drained = await waitFor(
    async () => {
      const info = await bus.jsm.consumers.info(STREAM.name, CONSUMERS.recorder);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    },
    30 * 60_000,
    20,
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await recorder.stop();
  if (!drained)
    throw new Error(`${name}: the recorder did not drain the stream (${recorder.stats.labelRows} rows)`);
  const [{ n }] = await store.query<{ n: string }>(
    `SELECT count() AS n FROM ${TABLES.neuronLabels} FINAL WHERE run_id = ${sqlString(spec.runId)}`,
  );
  if (Number(n) !== total) throw new Error(`${name}: expected ${total} label rows exactly once, found ${n}`);
  const [{ m }] = await store.query<{ m: string }>(
    `SELECT count() AS m FROM ${TABLES.layerMetrics} FINAL WHERE run_id = ${sqlString(spec.runId)}`,
  );
  if (Number(m) !== spec.checkpoints * spec.layers)
    throw new Error(`${name}: expected ${spec.checkpoints * spec.layers} layer_metrics rows, found ${m}`);
  // the next pass publishes the same message ids: a fresh stream has no duplicate window to drop them
  await bus.jsm.streams.delete(STREAM.name);
  return { rows: total, ms, alerts, recorderCpuS: (cpu.user + cpu.system) / 1e6 };
}

// ---- size on disk ----

async function printSizes(name: StoreName, store: Store, dataDir: string): Promise<void> {
  const [{ has }] = await store.query<{ has: string }>(
    `SELECT count() AS has FROM system.columns WHERE database = 'system' AND table = 'parts' AND name = 'bytes_on_disk'`,
  );
  const bytesColumn = Number(has) > 0 ? 'bytes_on_disk' : 'bytes';
  const parts = await store.query<{ table: string; parts: string; rows: string; bytes: string }>(
    `SELECT table, count() AS parts, sum(rows) AS rows, sum(${bytesColumn}) AS bytes FROM system.parts
     WHERE active AND database = currentDatabase() GROUP BY table ORDER BY table`,
  );
  const du = Number(execFileSync('du', ['-sb', dataDir], { encoding: 'utf8' }).split(/\s/)[0]);
  console.log(
    `   ${name}: store size (system.parts ${bytesColumn}, active parts) and du -sb ${dataDir}: ${mib(du)}`,
  );
  let sum = 0;
  for (const p of parts) {
    sum += Number(p.bytes);
    console.log(
      `     ${p.table.padEnd(18)} ${fmtInt(Number(p.rows)).padStart(12)} rows ${String(p.parts).padStart(4)} parts ${mib(Number(p.bytes)).padStart(12)}  (${(Number(p.bytes) / Math.max(1, Number(p.rows))).toFixed(1)} B/row)`,
    );
  }
  console.log(`     ${'all tables'.padEnd(18)} ${' '.repeat(29)} ${mib(sum).padStart(12)}`);
}

// ---- queries ----

interface Question {
  view: string;
  name: string;
  sql: string;
}

/** The web view's questions with the arguments libs/ui/src/views.ts gives them. */
async function uiQuestions(store: Store, spec: LongRunSpec): Promise<Question[]> {
  const run = spec.runId;
  const layers = layerNames(spec.layers);
  const layer = layers[Math.min(1, layers.length - 1)];
  const steps = (await store.query<{ step: number }>(Q.layerStepsSql({ run, layer }))).map((r) =>
    Number(r.step),
  );
  const last = steps[steps.length - 1] ?? 0;
  const heatSteps = sampleSteps(steps, HEAT_STRIP_MAX_STEPS);
  const slider = sampleSteps(steps, 5);
  const w = spec.neurons;
  const trail = [3, 40, 77, 150, 201].map((k) => k % w);
  const neuron = 17 % w;
  const qs: Question[] = [
    {
      view: 'runs list',
      name: 'tablesPresent',
      sql: Q.tablesPresentSql({ tables: [TABLES.runs, TABLES.checkpoints, TABLES.alerts] }),
    },
    { view: 'runs list', name: 'runsOverview', sql: Q.runsOverviewSql() },
    { view: 'run overview', name: 'runsOverview(run)', sql: Q.runsOverviewSql({ run }) },
    { view: 'run overview', name: 'runLayers', sql: Q.runLayersSql({ run }) },
    { view: 'run overview', name: 'trainingMetrics(step)', sql: Q.trainingMetricsSql({ run, by: 'step' }) },
    { view: 'run overview', name: 'layerCurves', sql: Q.layerCurvesSql({ run }) },
    { view: 'run overview', name: 'alertEpisodes', sql: Q.alertEpisodesSql({ run }) },
    { view: 'layer view', name: 'layerSteps', sql: Q.layerStepsSql({ run, layer }) },
    {
      view: 'layer view',
      name: `heatStrip(${heatSteps.length} steps)`,
      sql: Q.heatStripSql({ run, layer, steps: heatSteps }),
    },
    {
      view: 'layer view',
      name: 'categoryShares(step)',
      sql: Q.categorySharesSql({ run, layer, by: 'step' }),
    },
    {
      view: 'layer view',
      name: 'switchingLayerMode (probe, once per layer)',
      sql: Q.switchingLayerModeSql({ run, layer }),
    },
    {
      view: 'layer view',
      name: 'switchingNeurons(15)',
      sql: Q.switchingNeuronsSql({ run, layer, limit: 15 }),
    },
    {
      view: 'layer view',
      name: 'switchingNeurons(15), sequences (layers before migration 6)',
      sql: Q.switchingNeuronsFromSequencesSql({ run, layer, limit: 15 }),
    },
    {
      view: 'layer view',
      name: 'switchingConcepts, sequences (layers before migration 6)',
      sql: Q.switchingConceptsFromSequencesSql({ run, layer }),
    },
    {
      view: 'ui tests',
      name: 'labelCount (what the browser tests count)',
      sql: Q.labelCountSql({ run, layer }),
    },
    {
      view: 'concept map',
      name: 'labelSteps (the slider: steps that hold labels)',
      sql: Q.labelStepsSql({ run, layer }),
    },
    {
      view: 'concept map',
      name: `conceptMap(step ${last})`,
      sql: Q.conceptMapSql({ run, layer, step: last }),
    },
    ...slider.map((step) => ({
      view: 'concept map',
      name: `slider: conceptMap(step ${step})`,
      sql: Q.conceptMapSql({ run, layer, step }),
    })),
    {
      view: 'concept map',
      name: 'neuronPaths(5 neurons)',
      sql: Q.neuronPathsSql({ run, layer, neurons: trail }),
    },
    {
      view: 'neuron view',
      name: 'hasColumn(top_images)',
      sql: Q.hasColumnSql({ table: TABLES.neuronLabels, column: 'top_images' }),
    },
    {
      view: 'neuron view',
      name: `neuronHistory(n${neuron})`,
      sql: Q.neuronHistorySql({ run, layer, neuron, withTopImages: true }),
    },
    { view: 'live', name: 'changeToken', sql: Q.changeTokenSql() },
  ];
  return qs;
}

/** The same sampling as the layer view (libs/ui/src/views.ts sampleSteps). */
function sampleSteps(steps: readonly number[], max: number): number[] {
  if (steps.length <= max) return [...steps];
  const out: number[] = [];
  for (let i = 0; i < max; i++) out.push(steps[Math.round((i * (steps.length - 1)) / (max - 1))]);
  return [...new Set(out)];
}

/** Every SQL the provisioned dashboards and alert rules make Grafana run, expanded as the dashboard tests do. */
function grafanaQuestions(spec: LongRunSpec, switchesRecorded: string): Question[] {
  const shipped: ShippedQuery[] = [];
  for (const [rel, text] of Object.entries(generateFiles())) {
    if (rel.startsWith('dashboards/') && rel.endsWith('.json'))
      shipped.push(...queriesOfDashboard(rel, JSON.parse(text)));
    if (rel.startsWith('provisioning/alerting/')) shipped.push(...queriesOfAlertRules(rel, parseYaml(text)));
  }
  const gen = new LongRunGenerator({ ...spec });
  const from = new Date(spec.startMs - 60_000);
  const to = new Date(Date.parse(gen.timeAt(spec.checkpoints - 1)) + 60_000);
  const layers = layerNames(spec.layers);
  return shipped.map((q) => ({
    view: 'grafana',
    name: q.where,
    sql: expandPanelSql(q.sql, {
      from,
      to,
      intervalMs: 30_000,
      variables: {
        run: spec.runId,
        run_a: spec.runId,
        run_b: spec.runId,
        layer: layers[Math.min(1, layers.length - 1)],
        neurons: '16',
        step: String(gen.stepAt(spec.checkpoints - 1)),
        trail: '5',
        metric: 'distinct_concept_share',
        // the hidden variable as Grafana fills it (its own query, asked before the panels)
        switches_recorded: switchesRecorded,
      },
    }),
  }));
}

interface Timing {
  q: Question;
  rows: number;
  median: number;
  max: number;
  error?: string;
}

async function timeQuestions(
  name: StoreName,
  store: Store,
  questions: Question[],
  repeat: number,
): Promise<Timing[]> {
  const out: Timing[] = [];
  for (const q of questions) {
    const ms: number[] = [];
    let rows = 0;
    let error: string | undefined;
    for (let i = 0; i < repeat && error === undefined; i++) {
      const t = performance.now();
      try {
        rows = (await store.query(q.sql)).length;
      } catch (e) {
        error = errorMessage(e).split('\n')[0].slice(0, 160);
      }
      ms.push(performance.now() - t);
    }
    ms.sort((a, b) => a - b);
    const timing: Timing = { q, rows, median: ms[Math.floor(ms.length / 2)], max: ms[ms.length - 1], error };
    out.push(timing);
    const verdict = error ? 'ERROR' : timing.median <= LIMIT_MS ? 'PASS' : 'FAIL';
    console.log(
      `   ${name.padEnd(6)} ${q.view.padEnd(12)} ${q.name.slice(0, 78).padEnd(78)} ${String(rows).padStart(7)} rows  median ${timing.median.toFixed(0).padStart(5)} ms  max ${timing.max.toFixed(0).padStart(5)} ms  ${verdict}${error ? `: ${error}` : ''}${!error && timing.median <= LIMIT_MS && timing.max > LIMIT_MS ? ' (max over 1 s)' : ''}`,
    );
  }
  return out;
}

async function runQueries(
  name: StoreName,
  store: Store,
  spec: LongRunSpec,
  repeat: number,
): Promise<Timing[]> {
  console.log(`queries on ${name} (${store.serverVersion}), ${repeat} runs each, load ${load()}:`);
  await compareSwitching(name, store, spec);
  const layer = layerNames(spec.layers)[Math.min(1, spec.layers - 1)];
  const [recorded] = await store.query<{ recorded: number | string }>(
    Q.switchesRecordedSql({ run: spec.runId, layer }),
  );
  const grafana = grafanaQuestions(spec, String(recorded?.recorded ?? 1));
  return timeQuestions(name, store, [...(await uiQuestions(store, spec)), ...grafana], repeat);
}

/**
 * The switching questions from recorded switches against the same from each neuron's sequence, on
 * the bench's layer (every neuron): the same answers where the layer's switches were recorded (no
 * thinning, no time filter); a store filled before migration 6 says so instead.
 */
async function compareSwitching(name: StoreName, store: Store, spec: LongRunSpec): Promise<void> {
  const run = spec.runId;
  const layers = layerNames(spec.layers);
  const layer = layers[Math.min(1, layers.length - 1)];
  const [mode] = await store.query<{ recorded: number | string }>(Q.switchingLayerModeSql({ run, layer }));
  const all = { run, layer, limit: spec.neurons };
  const same = async (a: string, b: string): Promise<string> =>
    JSON.stringify(await store.query(a)) === JSON.stringify(await store.query(b)) ? 'same' : 'DIFFERENT';
  console.log(
    `   ${name}: layer ${layer} switches ${Number(mode?.recorded) === 1 ? 'recorded' : 'not recorded (filled before migration 6)'}; recorded vs sequences: neurons ${await same(
      Q.switchingNeuronsSql(all),
      Q.switchingNeuronsFromSequencesSql(all),
    )}, concepts ${await same(Q.switchingConceptsSql({ run, layer }), Q.switchingConceptsFromSequencesSql({ run, layer }))}`,
  );
}

function summary(all: Timing[]): void {
  const failed = all.filter((t) => t.error || t.median > LIMIT_MS);
  const slowMax = all.filter((t) => !t.error && t.median <= LIMIT_MS && t.max > LIMIT_MS);
  console.log(
    `long-run queries: ${all.length - failed.length} of ${all.length} within 1 s (median); ${failed.length} over or failed${
      failed.length ? `: ${failed.map((t) => t.q.name.slice(0, 50)).join('; ')}` : ''
    }; ${slowMax.length} with a max over 1 s; load ${load()}`,
  );
}

// ---- main ----

/**
 * A kept store gets the migrations added since it was filled (the questions read the current
 * schema; a recorder would apply them at its start too). Columns added later read as defaults.
 */
async function migrateKept(name: StoreName, store: Store): Promise<void> {
  const applied = await store.migrate();
  if (applied.length > 0)
    console.log(`   ${name}: migrations ${applied.join(', ')} applied to the kept store`);
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const repeat = argInt('repeat', 5);
  const queriesOnly = argText('queries-only');
  if (queriesOnly !== undefined) {
    const dir = resolve(queriesOnly);
    const kept = JSON.parse(readFileSync(join(dir, SPEC_FILE), 'utf8')) as Kept;
    const spec = kept.spec;
    console.log(
      `long-run queries only, ${dir}: run ${spec.runId}, ${spec.checkpoints} checkpoints x ${spec.layers} layers x ${spec.neurons} neurons; load ${load()}`,
    );
    const all: Timing[] = [];
    if (kept.stores.includes('server')) {
      const server = await startServer(dir);
      try {
        const store = await open('server', dir, server);
        await migrateKept('server', store);
        await printSizes('server', store, join(serverDir(dir), 'clickhouse', 'data'));
        all.push(...(await runQueries('server', store, spec, repeat)));
        await store.close();
      } finally {
        await server.stop();
      }
    }
    if (kept.stores.includes('chdb')) {
      const store = await open('chdb', dir);
      await migrateKept('chdb', store);
      await printSizes('chdb', store, chdbDir(dir));
      all.push(...(await runQueries('chdb', store, spec, repeat)));
      await store.close();
    }
    summary(all);
    return;
  }

  const checkpoints = argInt('checkpoints', 10_000);
  const spec: LongRunSpec = {
    runId: `long-run-${checkpoints}x${argInt('layers', 4)}x${argInt('neurons', 256)}`,
    checkpoints,
    layers: argInt('layers', 4),
    neurons: argInt('neurons', 256),
    concepts: argInt('concepts', 300),
    stepEvery: argInt('step-every', 10),
    secondsPerCheckpoint: 2,
    seed: argInt('seed', 17),
    startMs: 0,
  };
  spec.startMs = Math.floor(Date.now() / 1000) * 1000 - checkpoints * spec.secondsPerCheckpoint * 1000;
  const stores = (argText('stores') ?? 'server,chdb').split(',').map((s) => s.trim()) as StoreName[];
  if (stores.length === 0 || stores.some((s) => s !== 'server' && s !== 'chdb'))
    throw new Error(`--stores takes server, chdb or server,chdb; got ${argText('stores')}`);
  const opts = { chunk: argInt('chunk', 20), ahead: argInt('ahead', 60), batch: argInt('batch', 100) };
  const keep = argText('keep');
  const dir = keep !== undefined ? resolve(keep) : mkdtempSync(join(tmpdir(), 'cm-bench-long-run-'));
  if (keep !== undefined) {
    if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`--keep ${dir} is not empty`);
    mkdirSync(dir, { recursive: true });
  }
  writeFileSync(join(dir, SPEC_FILE), JSON.stringify({ spec, stores } satisfies Kept, null, 2));
  const total = spec.checkpoints * spec.layers * spec.neurons;
  console.log(
    `long-run benchmark: ${spec.checkpoints} checkpoints x ${spec.layers} layers x ${spec.neurons} neurons = ${fmtInt(total)} label rows, ${spec.concepts} concepts; stores ${stores.join(', ')}; folder ${dir}; ${process.env.CM_BENCH_NOTE ?? ''}load ${load()}`,
  );
  const nats = await startNats({
    dir: join(dir, 'nats'),
    port: await freePort(),
    monitorPort: await freePort(),
  });
  const server = stores.includes('server') ? await startServer(dir) : undefined;
  const bus = await connectBus({ url: nats.url, name: 'bench-long-run', labelEncoding: 'columns' });
  const opened: Store[] = [];
  const benchStart = performance.now();
  try {
    const filled: [StoreName, Store][] = [];
    for (const name of stores) {
      const store = await open(name, dir, server);
      opened.push(store);
      await store.migrate();
      console.log(
        `ingest into ${name} (${store.serverVersion}) through nats-server ${bus.nc.info?.version} and the recorder:`,
      );
      const r = await ingest(name, store, bus, spec, opts);
      console.log(
        `   ${name}: ${fmtInt(r.rows)} label rows (+ ${fmtInt(spec.checkpoints * (spec.layers + 1))} checkpoint/layer_metrics rows, ${r.alerts} alert records) in ${(r.ms / 1000).toFixed(1)} s = ${fmtInt(r.rows / (r.ms / 1000))} rows/s, generation+publish+recorder CPU of this process ${r.recorderCpuS.toFixed(1)} s; bench RSS ${rssMib()}; load ${load()}`,
      );
      filled.push([name, store]);
    }
    await bus.close();
    await nats.stop();
    rmSync(join(dir, 'nats'), { recursive: true, force: true });
    console.log(`ingest total ${((performance.now() - benchStart) / 1000).toFixed(1)} s`);
    const all: Timing[] = [];
    for (const [name, store] of filled) {
      await printSizes(
        name,
        store,
        name === 'server' ? join(serverDir(dir), 'clickhouse', 'data') : chdbDir(dir),
      );
      all.push(...(await runQueries(name, store, spec, repeat)));
    }
    summary(all);
    if (keep !== undefined)
      console.log(
        `stores kept in ${dir}; re-time the queries with: npm run bench:long-run -- --queries-only ${dir}`,
      );
  } finally {
    await bus.close().catch(() => undefined);
    for (const s of opened) await s.close().catch(() => undefined);
    await nats.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    if (keep === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
