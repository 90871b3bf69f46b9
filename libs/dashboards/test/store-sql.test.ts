import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { AlertRecord, CheckpointData, CmRecord, LayerActivations } from '@cm/contracts';
import { freePort } from '@cm/core';
import { loadConfig } from '@cm/config';
import { rulesFromConfig, WebhookNotifier, withWebhook } from '@cm/alerts';
import { createLocalMonitor, inlineDissector } from '@cm/engine';
import {
  makeTestBundles,
  seeded,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';
import { nullActivations, type ConceptSpace } from '@cm/dissect';
import * as Q from '@cm/queries';
import { thinLabels, type Store, type ThinResult } from '@cm/store';
import {
  expandPanelSql,
  generateFiles,
  GRAFANA_DIR,
  queriesOfAlertRules,
  queriesOfDashboard,
  type ShippedQuery,
} from '../src';
import { openTestStores, type TestStores } from './stores';

/**
 * The dashboards' SQL against stores filled by real runs of the concept engine (all-in-one
 * monitor, real CLIP-Dissect on a small synthetic probe bundle, real collapse detector), on chDB
 * (current ClickHouse) and clickhouse-server 18.16. One healthy run, one run whose `conv2`
 * concepts are engineered to converge and then recover; alerts also go to a webhook on 127.0.0.1.
 */

const HEALTHY = 'healthy-run';
const COLLAPSE = 'collapse-run';
/** Collapses at COLLAPSE_FROM and never recovers: its episodes stay open (what Grafana's rule watches). */
const OPEN = 'still-collapsed-run';
/** HEALTHY's label rows as a writer before migration 6 left them: no previous concept on any row. */
const LEGACY = 'legacy-run';
const STEPS = 14;
/** COLLAPSE is thinned once recorded: steps outside its newest 4 checkpoints keep every 3rd. */
const THINNING = { fullDays: 0, fullCheckpoints: 4, keepEvery: 3 };
/** Checkpoints [from, to) during which every conv2 neuron follows one concept. */
const COLLAPSE_FROM = 6;
const COLLAPSE_TO = 10;

/** Pooled activations where neuron k follows concept (k*7+step) % S, or concept 0 for all while collapsed. */
function activations(
  space: ConceptSpace,
  layer: string,
  width: number,
  step: number,
  collapsed: boolean,
): LayerActivations {
  const { rows: d, cols: s, data: p } = space.probeScores;
  const rnd = seeded(1000 + step * 31 + width);
  const data = new Float32Array(d * width);
  for (let k = 0; k < width; k++) {
    const c = collapsed ? 0 : (k * 7 + step) % s;
    for (let i = 0; i < d; i++) data[i * width + k] = p[i * s + c] + 0.3 * rnd();
  }
  return { layer, shape: [d, width], data };
}

function collapseCheckpoint(space: ConceptSpace, step: number, until = COLLAPSE_TO): CheckpointData {
  const collapsed = step >= COLLAPSE_FROM && step < until;
  return {
    step,
    layers: TEST_LAYERS.map((l) =>
      activations(space, l.name, l.width, step, collapsed && l.name === 'conv2'),
    ),
    metrics: { loss: 1 / (step + 1), accuracy: 0.5 + step / 100 },
  };
}

interface Webhook {
  url: string;
  received: AlertRecord[];
  server: Server;
}

async function startWebhook(): Promise<Webhook> {
  const received: AlertRecord[] = [];
  const port = await freePort();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AlertRecord);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}/alerts`, received, server };
}

let bundles: TestBundles;
let stores: TestStores;
let webhook: Webhook;
let started: Date;
let lastStep: number;
/** The retention pass over COLLAPSE, per store (stores.stores order). */
let thinned: ThinResult[];

/** Copies a run's label rows to another run id with previous_concept '' (rows written before migration 6). */
async function copyAsLegacy(store: Store, from: string, to: string): Promise<void> {
  const columns = (
    await store.query<{ name: string }>(
      `SELECT name FROM system.columns WHERE database = '${store.database}' AND table = 'neuron_labels'`,
    )
  ).map((c) => c.name);
  expect(columns).toContain('previous_concept');
  const value = (c: string): string => (c === 'run_id' ? `'${to}'` : c === 'previous_concept' ? `''` : c);
  await store.execute(
    `INSERT INTO ${store.database}.neuron_labels (${columns.join(', ')}) SELECT ${columns.map(value).join(', ')} FROM ${store.database}.neuron_labels FINAL WHERE run_id = '${from}'`,
  );
}

beforeAll(async () => {
  started = new Date(Date.now() - 60_000);
  bundles = await makeTestBundles();
  stores = await openTestStores();
  webhook = await startWebhook();
  const all = stores.stores.map((s) => s.store);
  // Every record into both stores, then the alerts to the webhook (what a service does with CM_ALERT_WEBHOOK_URL).
  const sink = withWebhook(
    {
      write: async (records: CmRecord[]) =>
        void (await Promise.all(all.map((s) => s.insertRecords(records)))),
    },
    new WebhookNotifier({ url: webhook.url, retries: 1, backoffMs: 10 }),
  );
  const alertRules = rulesFromConfig(loadConfig({}).alerts);
  for (const [runId, steps, checkpoint] of [
    [HEALTHY, STEPS, (step: number) => testCheckpoint(bundles.space, step)],
    [COLLAPSE, STEPS, (step: number) => collapseCheckpoint(bundles.space, step)],
    [OPEN, COLLAPSE_FROM + 3, (step: number) => collapseCheckpoint(bundles.space, step, Infinity)],
  ] as const) {
    const monitor = createLocalMonitor({
      bundles: bundles.bundles,
      store: all[0],
      dissector: inlineDissector(),
      alertRules,
      sink,
    });
    await monitor.startRun(testRunSpec(runId, bundles.bundleId));
    // the collapse run has a random-init baseline (2 "untrained" networks: seeded normal
    // activations), so the learned-concept panel has rows; the others have none (NULL)
    if (runId === COLLAPSE)
      for (let index = 0; index < 2; index++) {
        const d = bundles.space.probeScores.rows;
        const layers = TEST_LAYERS.map((l) => ({
          layer: l.name,
          shape: [d, l.width],
          data: nullActivations(d, l.width, 700 + 10 * index + l.width).data,
        }));
        await monitor.sendBaseline({ index, inits: 2, layers });
      }
    for (let step = 0; step < steps; step++) await monitor.sendCheckpoint(checkpoint(step));
    await monitor.endRun('completed');
    await monitor.close();
  }
  lastStep = STEPS - 1;
  thinned = [];
  for (const store of all) {
    thinned.push(await thinLabels(store, THINNING, { run: COLLAPSE }));
    await copyAsLegacy(store, HEALTHY, LEGACY);
  }
}, 240_000);

afterAll(async () => {
  await stores?.close();
  bundles?.cleanup();
  webhook?.server.close();
});

describe('engineered collapse, end to end', () => {
  it.each(['chdb', 'clickhouse-server'])(
    '%s: one firing and one resolution per episode, only on the collapsed layer; none for the healthy run',
    async (name) => {
      const store = stores.stores.find((s) => s.name === name)!.store;
      const rows = await store.query<{
        alert_id: string;
        run_id: string;
        layer: string;
        rule: string;
        state: string;
        step: number;
      }>(`SELECT alert_id, run_id, layer, rule, state, step FROM alerts FINAL ORDER BY alert_id, state`);
      expect(rows.filter((r) => r.run_id === HEALTHY)).toEqual([]);
      const collapse = rows.filter((r) => r.run_id === COLLAPSE);
      expect(collapse.length).toBeGreaterThan(0);
      const episodes = new Map<string, string[]>();
      for (const r of collapse) episodes.set(r.alert_id, [...(episodes.get(r.alert_id) ?? []), r.state]);
      for (const states of episodes.values()) expect(states.sort()).toEqual(['firing', 'resolved']);
      expect(new Set(collapse.map((r) => r.layer))).toEqual(new Set(['conv2']));
      const firing = collapse.filter((r) => r.state === 'firing');
      // one episode per rule: the collapse is one episode, whichever rules saw it
      expect(new Set(firing.map((r) => r.rule)).size).toBe(firing.length);
      // Real CLIP-Dissect cannot tell a layer of identical neurons apart: they lose their labels
      // (rather than all taking one), so this collapse shows as interpretable neurons vanishing.
      expect(firing.map((r) => r.rule)).toEqual(expect.arrayContaining(['interpretable_vanish']));
      for (const f of firing) {
        expect(Number(f.step)).toBeGreaterThanOrEqual(COLLAPSE_FROM);
        expect(Number(f.step)).toBeLessThan(COLLAPSE_TO);
      }
      // the run that stays collapsed: the same rules fire once each and nothing resolves
      const open = rows.filter((r) => r.run_id === OPEN);
      expect(open.map((r) => r.state)).toEqual(open.map(() => 'firing'));
      expect(open.map((r) => r.rule).sort()).toEqual(firing.map((r) => r.rule).sort());
    },
  );

  it('delivered exactly the stored alerts to the webhook, firing before resolution', async () => {
    const stored = await stores.stores[0].store.query<{ alert_id: string; state: string }>(
      `SELECT alert_id, state FROM alerts FINAL`,
    );
    const key = (a: { alertId?: string; alert_id?: string; state: string }): string =>
      `${a.alertId ?? a.alert_id}|${a.state}`;
    expect(webhook.received.map(key).sort()).toEqual(stored.map(key).sort());
    for (const a of webhook.received.filter((x) => x.state === 'resolved')) {
      const fired = webhook.received.findIndex((x) => x.alertId === a.alertId && x.state === 'firing');
      expect(fired).toBeGreaterThanOrEqual(0);
      expect(fired).toBeLessThan(webhook.received.indexOf(a));
      expect(a).toMatchObject({ kind: 'alert', runId: COLLAPSE, layer: 'conv2' });
    }
  });
});

/** Every query the committed provisioning files make Grafana run. */
function shippedQueries(): ShippedQuery[] {
  const out: ShippedQuery[] = [];
  for (const rel of Object.keys(generateFiles())) {
    const text = readFileSync(join(GRAFANA_DIR, rel), 'utf8');
    if (rel.startsWith('dashboards/')) out.push(...queriesOfDashboard(rel, JSON.parse(text)));
    if (rel.startsWith('provisioning/alerting/')) out.push(...queriesOfAlertRules(rel, parse(text)));
  }
  return out;
}

describe('every panel, variable, annotation and alert-rule query returns rows', () => {
  const queries = shippedQueries();
  it('finds the shipped queries', () => {
    expect(queries.length).toBeGreaterThanOrEqual(25);
  });

  const cases = queries.flatMap((q) =>
    ['chdb', 'clickhouse-server'].map((store) => [store, q.where, q] as const),
  );
  it.each(cases)('%s: %s', async (storeName, _where, q) => {
    const store = stores.stores.find((s) => s.name === storeName)!.store;
    const sql = expandPanelSql(q.sql, {
      from: started,
      to: new Date(Date.now() + 60_000),
      intervalMs: 30_000,
      variables: {
        run: COLLAPSE,
        run_a: COLLAPSE,
        run_b: HEALTHY,
        layer: 'conv2',
        neurons: '16',
        step: String(lastStep),
        trail: '5',
        metric: 'distinct_concept_share',
        switches_recorded: '1', // conv2 of COLLAPSE: recorded since migration 6 (tested below)
      },
    });
    const rows = await store.query(sql);
    expect(rows.length).toBeGreaterThan(0);
  });
});

/** The one shipped query of `file` whose `where` contains `part`, expanded for the given variables. */
function shipped(file: string, part: string, variables: Record<string, string>): string {
  const found = shippedQueries().filter(
    (q) => q.where.startsWith(`dashboards/${file} `) && q.where.includes(part),
  );
  expect(found.map((q) => q.where)).toHaveLength(1);
  return expandPanelSql(found[0].sql, {
    from: started,
    to: new Date(Date.now() + 60_000),
    intervalMs: 30_000,
    variables,
  });
}

type Row = Record<string, unknown>;
/** Rows with every value as a string (18.16 sends 64-bit integers as strings, chDB as numbers). */
const plain = (rows: Row[]): Record<string, string>[] =>
  rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)])));

describe.each(['chdb', 'clickhouse-server'])(
  '%s: Grafana switching panels on a layer recorded before migration 6',
  (storeName) => {
    const store = (): Store => stores.stores.find((s) => s.name === storeName)!.store;
    /** The variables as Grafana fills them: the hidden $switches_recorded by its own query first. */
    const vars = async (run: string): Promise<Record<string, string>> => {
      const [v] = await store().query<{ recorded: number | string }>(
        shipped('layer-view.json', 'variable $switches_recorded', { run, layer: 'conv2' }),
      );
      return { run, layer: 'conv2', switches_recorded: String(v.recorded) };
    };

    it('the hidden variable says which layers had their switches recorded', async () => {
      expect((await vars(LEGACY)).switches_recorded).toBe('0');
      expect((await vars(HEALTHY)).switches_recorded).toBe('1');
      // thinned: its first step's rows (no previous concept) may be kept, still one step at most
      expect((await vars(COLLAPSE)).switches_recorded).toBe('1');
    });

    it('the concepts panel answers the legacy layer from its sequences, as the web view does', async () => {
      const legacy = plain(
        await store().query(shipped('layer-view.json', 'switch into', await vars(LEGACY))),
      );
      // the same labels recorded with their previous concepts (HEALTHY) give the same answer
      const recorded = plain(
        await store().query(shipped('layer-view.json', 'switch into', await vars(HEALTHY))),
      );
      expect(legacy.length).toBeGreaterThan(0);
      expect(legacy.reduce((n, r) => n + Number(r.switches_into), 0)).toBeGreaterThan(0);
      expect(legacy).toEqual(recorded);
      expect(legacy).toEqual(
        plain(await store().query(Q.switchingConceptsFromSequencesSql({ run: LEGACY, layer: 'conv2' }))),
      );
      expect(recorded).toEqual(
        plain(await store().query(Q.switchingConceptsSql({ run: HEALTHY, layer: 'conv2' }))),
      );
      // what the panel showed before it chose per layer: no switch at all
      expect(await store().query(Q.switchingConceptsSql({ run: LEGACY, layer: 'conv2' }))).toEqual([]);
    });

    it('the neurons panel: the switches and concept paths the web view shows', async () => {
      const legacy = plain(
        await store().query(shipped('layer-view.json', 'switch concept most', await vars(LEGACY))),
      );
      const recorded = plain(
        await store().query(shipped('layer-view.json', 'switch concept most', await vars(HEALTHY))),
      );
      expect(legacy.some((r) => Number(r.switches) > 0)).toBe(true);
      expect(legacy).toEqual(recorded);
      // the web view's form for such a layer (libs/ui views.ts switchingView), at the panel's limit
      expect(legacy).toEqual(
        plain(
          await store().query(
            Q.switchingNeuronsFromSequencesSql({ run: LEGACY, layer: 'conv2', limit: legacy.length }),
          ),
        ),
      );
      const before = plain(await store().query(Q.switchingNeuronsSql({ run: LEGACY, layer: 'conv2' })));
      expect(before.every((r) => r.switches === '0')).toBe(true);
    });
  },
);

describe.each(['chdb', 'clickhouse-server'])(
  '%s: Grafana says which steps label retention thinned',
  (storeName) => {
    const index = (): number => stores.stores.findIndex((s) => s.name === storeName);
    const store = (): Store => stores.stores[index()].store;

    it('the retention panel lists the pass: steps decided, k, what was removed', async () => {
      const { records, plan } = thinned[index()];
      expect(records).toHaveLength(1);
      expect(plan[0].removeSteps.length).toBeGreaterThan(0);
      const r = records[0];
      for (const dash of ['run-overview.json', 'layer-view.json', 'concept-map.json']) {
        const rows = plain(
          await store().query(shipped(dash, "panel 'Label retention", { run: COLLAPSE, layer: 'conv2' })),
        );
        expect(rows.map(({ thinned_at: _at, ...rest }) => rest)).toEqual([
          {
            from_step: '0',
            through_step: String(r.throughStep),
            keep_every: '3',
            steps_removed: String(r.stepsRemoved),
            rows_removed: String(r.rowsRemoved),
            note: `steps 0-${r.throughStep}: labels of every 3rd checkpoint kept, and of alert steps (${r.stepsRemoved} steps' labels removed, ${r.rowsRemoved} rows); layer metrics of every step kept`,
          },
        ]);
        expect(
          await store().query(shipped(dash, "panel 'Label retention", { run: HEALTHY, layer: 'conv2' })),
        ).toEqual([]);
      }
    });

    it('the annotation spans the thinned steps over training time, on both time dashboards', async () => {
      const r = thinned[index()].records[0];
      const [span] = plain(
        await store().query(
          `SELECT min(time) AS first, max(time) AS last FROM checkpoints FINAL WHERE run_id = '${COLLAPSE}' AND step <= ${r.throughStep}`,
        ),
      );
      for (const dash of ['run-overview.json', 'layer-view.json']) {
        const rows = plain(
          await store().query(shipped(dash, "annotation 'Label retention", { run: COLLAPSE })),
        );
        expect(rows.map((a) => [a.time, a.timeEnd])).toEqual([[span.first, span.last]]);
        expect(rows[0].text).toMatch(
          new RegExp(
            `^Labels thinned by retention, steps 0-${r.throughStep}: labels of every 3rd checkpoint kept`,
          ),
        );
        expect(await store().query(shipped(dash, "annotation 'Label retention", { run: HEALTHY }))).toEqual(
          [],
        );
      }
    });

    it("the concept map's step variable offers only steps that hold labels", async () => {
      const { plan } = thinned[index()];
      const offered = (
        await store().query<{ step: number | string }>(
          shipped('concept-map.json', 'variable $step', { run: COLLAPSE, layer: 'conv2' }),
        )
      ).map((x) => Number(x.step));
      expect(offered.length).toBe(STEPS - plan[0].removeSteps.length);
      for (const step of plan[0].removeSteps) expect(offered).not.toContain(step);
      for (const step of plan[0].keptSteps) expect(offered).toContain(step);
    });
  },
);

/** The ```sql blocks of docs/sql-recipes.md, with the heading each belongs to. */
function recipes(): { heading: string; sql: string }[] {
  const text = readFileSync(join(__dirname, '../../../docs/sql-recipes.md'), 'utf8');
  const out: { heading: string; sql: string }[] = [];
  let heading = '';
  const re = /^## (.*)$|^```sql\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m[1] !== undefined) heading = m[1];
    else
      out.push({
        heading: `${heading} #${out.filter((r) => r.heading.startsWith(heading)).length + 1}`,
        sql: m[2],
      });
  }
  return out;
}

describe('docs/sql-recipes.md: every recipe runs and answers', () => {
  const list = recipes();
  it('has the three questions of the issue', () => {
    expect(list.length).toBeGreaterThanOrEqual(6);
    const headings = list.map((r) => r.heading).join('\n');
    expect(headings).toMatch(/first become interpretable/);
    expect(headings).toMatch(/changed concept most/);
    expect(headings).toMatch(/runs collapsed/);
    expect(headings).toMatch(/two runs compare/);
  });
  const cases = list.flatMap((r) =>
    ['chdb', 'clickhouse-server'].map((store) => [store, r.heading, r.sql] as const),
  );
  it.each(cases)('%s: %s', async (storeName, _heading, sql) => {
    const store = stores.stores.find((s) => s.name === storeName)!.store;
    const rows = await store.query(
      expandPanelSql(sql, {
        from: started,
        to: new Date(),
        variables: { run: COLLAPSE, compare: HEALTHY, layer: 'conv2' },
      }),
    );
    expect(rows.length).toBeGreaterThan(0);
  });

  it("compares two runs: each column is that run's value at its last checkpoint", async () => {
    const sql = list.find(
      (r) => r.heading.startsWith('How do two runs compare') && r.sql.includes('colour_run'),
    )!.sql;
    for (const { store } of stores.stores) {
      const rows = await store.query<{ layer: string; diversity_run: number; diversity_compare: number }>(
        expandPanelSql(sql, {
          from: started,
          to: new Date(),
          variables: { run: COLLAPSE, compare: HEALTHY, layer: 'conv2' },
        }),
      );
      const direct = await store.query<{ run_id: string; d: number }>(
        `SELECT run_id, argMax(distinct_concept_share, step) AS d FROM layer_metrics FINAL WHERE layer = 'conv2' AND run_id IN ('${COLLAPSE}', '${HEALTHY}') GROUP BY run_id`,
      );
      const byRun = Object.fromEntries(direct.map((r) => [r.run_id, Number(r.d)]));
      const conv2 = rows.find((r) => r.layer === 'conv2')!;
      expect(Number(conv2.diversity_run)).toBeCloseTo(byRun[COLLAPSE], 6);
      expect(Number(conv2.diversity_compare)).toBeCloseTo(byRun[HEALTHY], 6);
    }
  });

  it('answers correctly on the engineered run: conv2 collapsed at the firing step and recovered', async () => {
    const sql = list.find(
      (r) => r.heading.startsWith('Which runs collapsed') && r.sql.includes('recovered_at_step'),
    )!.sql;
    const rows = await stores.stores[1].store.query<{
      run_id: string;
      layer: string;
      collapsed_at_step: number;
      recovered_at_step: string;
    }>(sql);
    const episode = rows.find((r) => r.run_id === COLLAPSE)!;
    expect(episode.layer).toBe('conv2');
    expect(Number(episode.collapsed_at_step)).toBeGreaterThanOrEqual(COLLAPSE_FROM);
    expect(Number(episode.recovered_at_step)).toBeGreaterThanOrEqual(COLLAPSE_TO);
    expect(
      rows.filter((r) => r.run_id === OPEN).every((r) => r.recovered_at_step === 'still collapsed'),
    ).toBe(true);
    expect(rows.some((r) => r.run_id === HEALTHY)).toBe(false);
  });
});
