import { CmError, notFound } from '@cm/core';
import { projectTo2d } from '@cm/dissect';
import type { BundleDirectory } from '@cm/probe';
import * as Q from '@cm/queries';
import type { Store } from '@cm/store';

/**
 * What the report's figures are drawn from: one run (and optionally a second to compare), read from
 * a store with the shared questions of @cm/queries (the same SQL as the web view and the Grafana
 * panels). Pure data, no drawing: figures.ts turns it into chart specs.
 */
export interface RunInfo {
  runId: string;
  model: string;
  paradigm: string;
  bundleId: string;
  status: string;
  startedAt: string;
  checkpoints: number;
  lastStep: number | null;
  health: string;
  firingRules: string[];
}

export interface CurvePoint {
  step: number;
  layer: string;
  neurons: number;
  interpretable: number;
  distinctShare: number;
  entropy: number;
  spread: number;
  dead: number;
}

export interface MapNeuron {
  neuron: string;
  x: number;
  y: number;
  concept: string;
  category: string;
}

export interface Trajectory {
  neuron: string;
  points: [number, number][];
}

export interface LayerAtLast {
  layer: string;
  step: number;
  /** Share of the layer's interpretable neurons per category at `step`. */
  categoryShares: Record<string, number>;
  neurons: MapNeuron[];
  trajectories: Trajectory[];
}

export interface RunData {
  info: RunInfo;
  /** Layers in declaration order (the run record), then any others seen in the metrics. */
  layers: string[];
  curves: CurvePoint[];
  last: LayerAtLast[];
}

export interface ConceptPlace {
  concept: string;
  category: string;
  x: number;
  y: number;
}

export interface ReportData {
  runs: RunData[];
  /** The probe bundle's concepts on its fixed 2D map; empty (with `note`) when the bundle is not here. */
  concepts: ConceptPlace[];
  notes: string[];
  generatedAt: string;
}

/** Neurons whose trajectories the concept map draws (the ones that moved most up to the last step). */
export const TRAJECTORIES_PER_LAYER = 6;

type Row = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

async function runInfo(store: Store, runId: string): Promise<RunInfo> {
  const rows = await store.query<Row>(Q.runsOverviewSql({ run: runId }));
  if (rows.length === 0)
    throw notFound(`unknown run ${JSON.stringify(runId)}`, { run: runId }, 'list the runs with `cm runs`');
  const r = rows[0];
  const checkpoints = num(r.checkpoints ?? 0);
  return {
    runId: str(r.run_id),
    model: str(r.model),
    paradigm: str(r.paradigm),
    bundleId: str(r.bundle_id),
    status: str(r.status),
    startedAt: str(r.started_at),
    checkpoints,
    lastStep: checkpoints > 0 ? num(r.last_step) : null,
    health: str(r.health),
    firingRules: str(r.firing_rules).split(',').filter(Boolean),
  };
}

async function runData(store: Store, runId: string): Promise<RunData> {
  const info = await runInfo(store, runId);
  const [declared, curveRows] = await Promise.all([
    store.query<Row>(Q.runLayersSql({ run: runId })),
    store.query<Row>(Q.layerCurvesSql({ run: runId })),
  ]);
  const curves: CurvePoint[] = curveRows.map((r) => ({
    step: num(r.step),
    layer: str(r.layer),
    neurons: num(r.neurons),
    interpretable: num(r.interpretable_fraction),
    distinctShare: num(r.distinct_concept_share),
    entropy: num(r.label_entropy),
    spread: num(r.embedding_spread),
    dead: num(r.dead_fraction),
  }));
  const seen = new Set(curves.map((c) => c.layer));
  const layers = [
    ...declared.map((d) => str(d.name)).filter((l) => seen.has(l)),
    ...[...seen].filter((l) => !declared.some((d) => str(d.name) === l)).sort(),
  ];
  const last = await Promise.all(
    layers.map(async (layer): Promise<LayerAtLast> => {
      const step = Math.max(...curves.filter((c) => c.layer === layer).map((c) => c.step));
      const [shares, map, paths] = await Promise.all([
        store.query<Row>(Q.lastCategorySharesSql({ runs: [runId], layer })),
        store.query<Row>(Q.conceptMapSql({ run: runId, layer, step })),
        store.query<Row>(Q.trajectoriesSql({ run: runId, layer, step, trail: TRAJECTORIES_PER_LAYER })),
      ]);
      const trajectories = new Map<string, [number, number][]>();
      for (const p of paths) {
        const id = str(p.neuron_id);
        let t = trajectories.get(id);
        if (!t) trajectories.set(id, (t = []));
        t.push([num(p.x), num(p.y)]);
      }
      return {
        layer,
        step,
        categoryShares: Object.fromEntries(shares.map((s) => [str(s.category), num(s.share)])),
        neurons: map.map((m) => ({
          neuron: str(m.neuron_id),
          x: num(m.x),
          y: num(m.y),
          concept: str(m.concept),
          category: str(m.category),
        })),
        trajectories: [...trajectories].map(([neuron, points]) => ({ neuron, points })),
      };
    }),
  );
  return { info, layers, curves, last };
}

/** The bundle's concepts on its fixed 2D map (the projection of their embeddings, as the neurons'). */
export function conceptPlaces(bundles: BundleDirectory, bundleId: string): ConceptPlace[] {
  const { space } = bundles.get(bundleId);
  const { rows, cols, data } = space.conceptEmbeddings;
  const places: ConceptPlace[] = [];
  for (let i = 0; i < rows; i++) {
    const { x, y } = projectTo2d(space, data.subarray(i * cols, (i + 1) * cols));
    places.push({ concept: space.concepts[i], category: space.categories[i], x, y });
  }
  return places;
}

export interface LoadReportOptions {
  store: Store;
  bundles: BundleDirectory;
  run: string;
  compare?: string;
}

/**
 * Where two runs' setups (runs.setup_*, migration 3) differ, in words; nothing when they agree or
 * either run predates the setup columns (recorded as empty).
 */
export async function setupDifferences(store: Store, a: string, b: string): Promise<string[]> {
  // the comparison itself is @cm/queries' (the web view's compare page warns from the same one)
  return (await Q.runSetupDifferences(store, a, b)).map((d) => d.text);
}

export async function loadReportData(opts: LoadReportOptions): Promise<ReportData> {
  const ids = opts.compare !== undefined ? [opts.run, opts.compare] : [opts.run];
  if (opts.compare === opts.run)
    throw new CmError('INVALID_ARGUMENT', `--compare names the same run as --run (${opts.run})`, {
      context: { run: opts.run },
      hint: 'compare with another run: `cm runs` lists them',
    });
  const runs: RunData[] = [];
  for (const id of ids) runs.push(await runData(opts.store, id));
  const notes: string[] = [];
  for (const r of runs)
    if (r.layers.length === 0) notes.push(`run ${r.info.runId} has no checkpoints with layer metrics yet`);
  let concepts: ConceptPlace[] = [];
  const bundleId = runs[0].info.bundleId;
  try {
    concepts = conceptPlaces(opts.bundles, bundleId);
  } catch (e) {
    if (!(e instanceof CmError) || (e.code !== 'NOT_FOUND' && e.code !== 'INVALID_ARGUMENT')) throw e;
    notes.push(
      `probe bundle ${bundleId} is not in ${opts.bundles.root}: the concept map shows no concept names`,
    );
  }
  if (runs.length === 2 && runs[1].info.bundleId !== bundleId)
    notes.push(
      `the runs use different probe bundles (${bundleId}, ${runs[1].info.bundleId}): their concept maps are not the same space`,
    );
  if (runs.length === 2) {
    const differ = await setupDifferences(opts.store, runs[0].info.runId, runs[1].info.runId);
    if (differ.length)
      notes.push(
        `the runs were scored with different setups (${differ.join('; ')}): their scores and interpretable shares do not compare directly`,
      );
  }
  return { runs, concepts, notes, generatedAt: new Date().toISOString() };
}
