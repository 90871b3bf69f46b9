/**
 * `cm ui` benchmark: each view's API answer time on a run of 1,000 checkpoints x 4 layers x 512
 * neurons (2,048,000 label rows), on embedded chDB and on clickhouse-server 18.16, and the concept
 * map of 2,048 neurons rendered in Debian's chromium.
 *
 *   npm run bench:ui [-- --steps 1000 --width 512 --repeat 5 --only chdb|server]
 *
 * Rows are synthetic (store.insertRecords in batches: run, checkpoints, labels, layer snapshots, a
 * few alert episodes), plus a second run of checkpoints and layer metrics only, for the compare
 * view. Each route is asked once to warm up, then `--repeat` times; the median and the max are
 * printed. The machine's load average is printed with the figures: on a shared machine they mean
 * little without it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CmRecord, NeuronLabelRow } from '@cm/contracts';
import { freePort, mulberry32, setLogLevel } from '@cm/core';
import { BundleDirectory } from '@cm/probe';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import { openStore, type Store } from '@cm/store';
import { startUiServer } from '@cm/ui';
import { launchBrowser } from '@cm/ui/src/chromium';
import { arg, argText, loadText as load } from './args';

const STEPS = arg('steps', 1000);
const WIDTH = arg('width', 512);
const REPEAT = arg('repeat', 5);
const LAYERS = ['conv1', 'conv2', 'conv3', 'fc'];
const RUN = 'bench-run';
const OTHER = 'bench-other';
const CATEGORIES = ['colour', 'shape', 'texture', 'size', 'position', 'background'];
const CONCEPTS = Array.from({ length: 96 }, (_, i) => `${CATEGORIES[i % CATEGORIES.length]}-${i}`);
const iso = (step: number): string => new Date(Date.UTC(2026, 0, 1) + step * 1000).toISOString();

function labels(layer: number, step: number, width: number, rnd: () => number): NeuronLabelRow[] {
  return Array.from({ length: width }, (_, neuron) => {
    const c = (neuron * 7 + layer * 3 + Math.floor(step / (20 + (neuron % 30)))) % CONCEPTS.length;
    return {
      neuron,
      concept: CONCEPTS[c],
      category: CATEGORIES[c % CATEGORIES.length],
      score: 0.2 + rnd() * 0.6,
      interpretable: rnd() > 0.3,
      dead: false,
      topConcepts: [0, 1, 2, 3, 4].map((k) => CONCEPTS[(c + k) % CONCEPTS.length]),
      topScores: [0.5, 0.4, 0.3, 0.2, 0.1],
      topImages: [0, 1, 2, 3, 4, 5, 6, 7].map((k) => (neuron + k * 13) % 2000),
      x: Math.cos(c) * 3 + rnd() * 0.2,
      y: Math.sin(c) * 3 + rnd() * 0.2,
    };
  });
}

function snapshot(runId: string, layer: string, step: number, rnd: () => number): CmRecord {
  const shares: Record<string, number> = {};
  for (const c of CATEGORIES) shares[c] = rnd();
  const sum = Object.values(shares).reduce((a, b) => a + b, 0);
  for (const c of CATEGORIES) shares[c] /= sum;
  return {
    kind: 'snapshot',
    runId,
    layer,
    step,
    neurons: WIDTH,
    interpretableFraction: 0.4 + 0.3 * rnd(),
    meanTopScore: 0.5,
    distinctConceptShare: 0.5 + 0.2 * rnd(),
    labelEntropy: 4 + rnd(),
    embeddingSpread: 1 + rnd(),
    deadFraction: 0.05 * rnd(),
    switches: Math.floor(rnd() * 50),
    switchFraction: 0.1 * rnd(),
    threshold: 0.3,
    categoryShares: shares,
    topConcepts: [{ concept: CONCEPTS[0], count: 12 }],
    time: iso(step),
  };
}

export async function fill(store: Store, bundleId: string): Promise<void> {
  const rnd = mulberry32(11);
  const t0 = Date.now();
  const run = (runId: string): CmRecord => ({
    kind: 'run',
    runId,
    model: 'bench-cnn',
    paradigm: runId === RUN ? 'standard' : 'adversarial',
    bundleId,
    layers: LAYERS.map((name) => ({ name, width: WIDTH })),
    tags: {},
    status: 'completed',
    startedAt: iso(0),
    endedAt: iso(STEPS),
    time: iso(STEPS),
  });
  await store.insertRecords([run(RUN), run(OTHER)]);
  const BATCH = 20;
  for (let from = 0; from < STEPS; from += BATCH) {
    const records: CmRecord[] = [];
    for (let step = from; step < Math.min(STEPS, from + BATCH); step++) {
      for (const runId of [RUN, OTHER])
        records.push({
          kind: 'checkpoint',
          runId,
          step,
          metrics: { loss: 2 / (1 + step / 50), accuracy: step / STEPS },
          time: iso(step),
        });
      LAYERS.forEach((layer, l) => {
        records.push({
          kind: 'labels',
          runId: RUN,
          layer,
          step,
          part: 0,
          parts: 1,
          labels: labels(l, step, WIDTH, rnd),
          time: iso(step),
        });
        records.push(snapshot(RUN, layer, step, rnd), snapshot(OTHER, layer, step, rnd));
      });
    }
    await store.insertRecords(records);
  }
  const alerts: CmRecord[] = [100, 400, 700].flatMap((step, i) =>
    (['firing', 'resolved'] as const).map((state) => ({
      kind: 'alert' as const,
      alertId: `episode-${i}`,
      runId: RUN,
      layer: 'conv2',
      step: state === 'firing' ? step : step + 50,
      rule: 'diversity_drop',
      state,
      severity: 'warning' as const,
      value: 0.1,
      threshold: 0.2,
      message: 'bench',
      time: iso(step),
    })),
  );
  await store.insertRecords(alerts);
  // a run of 1,000 checkpoints is written over hours, with the background merges long done: wait
  // for the merges of this fast fill (at most a minute) so FINAL reads the parts a real run leaves
  const settle = Date.now();
  for (;;) {
    const [m] = await store.query<{ n: string }>(`SELECT count() AS n FROM system.merges`);
    if (Number(m.n) === 0 || Date.now() - settle > 60_000) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const [parts] = await store.query<{ n: string }>(
    `SELECT count() AS n FROM system.parts WHERE active AND database = currentDatabase() AND table = 'neuron_labels'`,
  );
  const [n] = await store.query<{ n: string }>(`SELECT count() AS n FROM neuron_labels FINAL`);
  process.stdout.write(
    `  filled ${Number(n.n).toLocaleString('en')} label rows in ${((settle - t0) / 1000).toFixed(0)} s; merges settled after ${((Date.now() - settle) / 1000).toFixed(0)} s (${parts.n} parts of neuron_labels)\n`,
  );
}

async function timeRoutes(name: string, store: Store, bundles: BundleDirectory): Promise<void> {
  const ui = await startUiServer({ store, bundles });
  const base = ui.url.replace(/\/$/, '');
  const mid = Math.floor(STEPS / 2);
  const routes: [string, string][] = [
    ['runs', '/api/runs'],
    ['run overview', `/api/runs/${RUN}`],
    ['layer view', `/api/runs/${RUN}/layers/conv2`],
    ['  switching', `/api/runs/${RUN}/layers/conv2/switching`],
    ['concept map', `/api/runs/${RUN}/layers/conv2/map?step=${mid}&trail=1,2,3,4,5&overlay=${OTHER}`],
    ['neuron view', `/api/runs/${RUN}/layers/conv2/neurons/77`],
    ['compare', `/api/compare/${RUN}/${OTHER}?layer=conv2`],
  ];
  try {
    for (const [view, url] of routes) {
      const times: number[] = [];
      let bytes = 0;
      for (let i = 0; i <= REPEAT; i++) {
        const t = performance.now();
        const res = await fetch(base + url);
        const body = await res.arrayBuffer();
        if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${Buffer.from(body).toString()}`);
        if (i > 0) times.push(performance.now() - t);
        bytes = body.byteLength;
      }
      times.sort((a, b) => a - b);
      process.stdout.write(
        `  ${name.padEnd(18)} ${view.padEnd(13)} median ${times[Math.floor(times.length / 2)].toFixed(0).padStart(5)} ms  max ${times.at(-1)!.toFixed(0).padStart(5)} ms  (${(bytes / 1024).toFixed(0)} KiB)\n`,
      );
    }
  } finally {
    await ui.close();
  }
}

async function mapRender(store: Store, bundles: BundleDirectory, bundleId: string): Promise<void> {
  const rnd = mulberry32(5);
  const wide = 2048;
  await store.insertRecords([
    {
      kind: 'run',
      runId: 'bench-map',
      model: 'bench-cnn',
      paradigm: 'standard',
      bundleId,
      layers: [{ name: 'wide', width: wide }],
      tags: {},
      status: 'completed',
      startedAt: iso(0),
      endedAt: iso(1),
      time: iso(1),
    },
    {
      kind: 'labels',
      runId: 'bench-map',
      layer: 'wide',
      step: 0,
      part: 0,
      parts: 1,
      labels: labels(0, 0, wide, rnd),
      time: iso(0),
    },
    snapshot('bench-map', 'wide', 0, rnd),
  ]);
  const ui = await startUiServer({ store, bundles });
  const browser = await launchBrowser({ viewport: { width: 1440, height: 900 } });
  try {
    const renders: number[] = [];
    const loads: number[] = [];
    for (let i = 0; i <= REPEAT; i++) {
      const t = performance.now();
      const p = await browser.open(`${ui.url}runs/bench-map/layers/wide/map?step=0`);
      await p.page.waitForFunction(
        'window.cm?.ready === true && window.cmMapRenderMs !== undefined',
        undefined,
        { timeout: 30_000 },
      );
      const drawnIn = performance.now() - t;
      const points = (await p.page.evaluate(
        `window.cm.charts.map.getOption().series.filter((s) => String(s.id).startsWith('neurons:')).reduce((a, s) => a + s.data.length, 0)`,
      )) as number;
      if (points !== wide) throw new Error(`the map drew ${points} neurons, expected ${wide}`);
      if (i > 0) {
        renders.push((await p.page.evaluate('window.cmMapRenderMs')) as number);
        loads.push(drawnIn);
      }
      await p.page.close();
    }
    const med = (xs: number[]): string => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(0);
    process.stdout.write(
      `  concept map of ${wide} neurons in chromium: render (setOption -> finished) median ${med(renders)} ms, page load to drawn median ${med(loads)} ms\n`,
    );
  } finally {
    await browser.close();
    await ui.close();
  }
}

async function main(): Promise<void> {
  setLogLevel('warn');
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-ui-'));
  const bundles = new BundleDirectory(join(dir, 'bundles')); // no bundle: concept names are not drawn
  const bundleId = '0123456789abcdef';
  let server: ManagedServer | undefined;
  process.stdout.write(
    `cm ui benchmark: ${STEPS} checkpoints x ${LAYERS.length} layers x ${WIDTH} neurons (${(STEPS * LAYERS.length * WIDTH).toLocaleString('en')} label rows); load average ${load()}\n`,
  );
  try {
    const only = argText('only', 'both');
    const chdb =
      only === 'server'
        ? undefined
        : await openStore({ kind: 'chdb', path: join(dir, 'chdb'), database: 'cm_bench_ui' });
    if (chdb)
      try {
        await chdb.migrate();
        process.stdout.write(`chDB ${chdb.serverVersion}\n`);
        await fill(chdb, bundleId);
        await timeRoutes('chdb', chdb, bundles);
        await mapRender(chdb, bundles, bundleId);
      } finally {
        await chdb.close();
      }
    if (only !== 'chdb') {
      server = await startClickHouse({
        dir: join(dir, 'stack'),
        httpPort: await freePort(),
        tcpPort: await freePort(),
      });
      const ch = await openStore({
        kind: 'server',
        url: server.url,
        user: 'default',
        password: '',
        database: 'cm_bench_ui',
      });
      try {
        await ch.migrate();
        process.stdout.write(`clickhouse-server ${ch.serverVersion}\n`);
        await fill(ch, bundleId);
        await timeRoutes('clickhouse-server', ch, bundles);
      } finally {
        await ch.close();
      }
    }
    process.stdout.write(`load average after: ${load()}\n`);
  } finally {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module)
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
