import { CmError, notFound } from '@cm/core';
import { TABLES } from '@cm/contracts';
import { projectTo2d } from '@cm/dissect';
import type { BundleDirectory } from '@cm/probe';
import * as Q from '@cm/queries';
import { describeThinning, thinningRecords, type Store } from '@cm/store';
import {
  HEAT_STRIP_MAX_STEPS,
  type AlertEpisode,
  type CompareAnswer,
  type ConceptPlace,
  type LayerAnswer,
  type LayerCurvePoint,
  type LayerInfo,
  type MapAnswer,
  type MapPoint,
  type NeuronAnswer,
  type OverviewAnswer,
  type RunRow,
  type RunsAnswer,
  type SwitchingAnswer,
} from './api-types';

/**
 * The data of each view: a store (read with SELECTs only) and the values of a URL in, the JSON of
 * an api-types answer out. Every value reaches SQL through @cm/queries' escaping; an unknown run,
 * layer or neuron is CmError NOT_FOUND with `context.missing` naming it (the server answers 404).
 */
export interface ViewContext {
  store: Store;
  bundles: BundleDirectory;
}

type Row = Record<string, unknown>;
const num = (v: unknown): number => Number(v);
const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

export function missing(kind: string, value: string, hint?: string): CmError {
  return notFound(`unknown ${kind} ${JSON.stringify(value)}`, { missing: { kind, value } }, hint);
}

function runRow(r: Row): RunRow {
  const checkpoints = num(r.checkpoints ?? 0);
  return {
    runId: str(r.run_id),
    model: str(r.model),
    paradigm: str(r.paradigm),
    bundleId: str(r.bundle_id),
    status: str(r.status),
    startedAt: str(r.started_at),
    endedAt: str(r.ended_at),
    checkpoints,
    lastStep: checkpoints > 0 ? num(r.last_step) : null,
    health: num(r.firing_alerts ?? 0) > 0 ? 'alerting' : 'ok',
    firingAlerts: num(r.firing_alerts ?? 0),
    firingRules: str(r.firing_rules).split(',').filter(Boolean),
    thinned: '',
  };
}

export async function runsView(ctx: ViewContext, storeName: string): Promise<RunsAnswer> {
  // a reader does not migrate (that is a write): a store without the tables has no runs yet
  const [present] = await ctx.store.query(
    Q.tablesPresentSql({ tables: [TABLES.runs, TABLES.checkpoints, TABLES.alerts] }),
  );
  if (num(present?.n ?? 0) < 3) return { store: storeName, runs: [] };
  const rows = await ctx.store.query(Q.runsOverviewSql());
  const thinned = await thinningRecords(ctx.store);
  return {
    store: storeName,
    runs: rows.map((r) => ({ ...runRow(r), thinned: describeThinning(thinned.get(str(r.run_id)) ?? []) })),
  };
}

async function findRun(ctx: ViewContext, runId: string): Promise<RunRow> {
  const [row] = await ctx.store.query(Q.runsOverviewSql({ run: runId }));
  if (!row) throw missing('run', runId, 'the runs view lists the runs this store holds');
  // label retention (label_thinning): the views say when the steps they show lost labels
  const thinned = (await thinningRecords(ctx.store, runId)).get(runId) ?? [];
  return { ...runRow(row), thinned: describeThinning(thinned) };
}

async function runLayers(ctx: ViewContext, runId: string): Promise<LayerInfo[]> {
  const declared = await ctx.store.query(Q.runLayersSql({ run: runId }));
  if (declared.length > 0) return declared.map((r) => ({ name: str(r.name), width: num(r.width) }));
  // a run record without layers (older writers): the layers that have metrics
  const seen = await ctx.store.query(Q.layersSql({ run: runId }));
  return seen.map((r) => ({ name: str(r.layer), width: 0 }));
}

async function findLayer(ctx: ViewContext, runId: string, layer: string): Promise<LayerInfo> {
  const layers = await runLayers(ctx, runId);
  const found = layers.find((l) => l.name === layer);
  if (!found)
    throw missing(
      'layer',
      layer,
      `run ${runId} has layers ${layers.map((l) => l.name).join(', ') || '(none yet)'}`,
    );
  return found;
}

function episodes(rows: Row[]): AlertEpisode[] {
  return rows.map((r) => ({
    alertId: str(r.alert_id),
    layer: str(r.layer),
    rule: str(r.rule),
    severity: str(r.severity),
    firedStep: num(r.fired_step),
    resolvedStep: r.resolved_step === 'open' ? null : num(r.resolved_step),
    value: num(r.value),
    threshold: num(r.threshold),
    message: str(r.message),
  }));
}

function curves(rows: Row[]): LayerCurvePoint[] {
  return rows.map((r) => ({
    step: num(r.step),
    layer: str(r.layer),
    neurons: num(r.neurons),
    learned: r.learned_fraction === null || r.learned_fraction === undefined ? null : num(r.learned_fraction),
    interpretable: num(r.interpretable_fraction),
    distinctShare: num(r.distinct_concept_share),
    entropy: num(r.label_entropy),
    spread: num(r.embedding_spread),
    dead: num(r.dead_fraction),
    switchRate: num(r.switch_fraction),
    meanTopScore: num(r.mean_top_score),
  }));
}

export async function overviewView(ctx: ViewContext, runId: string): Promise<OverviewAnswer> {
  const run = await findRun(ctx, runId);
  const [layers, training, curveRows, episodeRows] = await Promise.all([
    runLayers(ctx, runId),
    ctx.store.query(Q.trainingMetricsSql({ run: runId, by: 'step' })),
    ctx.store.query(Q.layerCurvesSql({ run: runId })),
    ctx.store.query(Q.alertEpisodesSql({ run: runId })),
  ]);
  return {
    run,
    layers,
    training: training.map((r) => ({ step: num(r.step), metric: str(r.metric), value: num(r.value) })),
    curves: curves(curveRows),
    episodes: episodes(episodeRows),
  };
}

/** At most `max` steps, evenly spread, always keeping the first and the last. */
export function sampleSteps(steps: readonly number[], max: number): number[] {
  if (steps.length <= max) return [...steps];
  const out: number[] = [];
  for (let i = 0; i < max; i++) out.push(steps[Math.round((i * (steps.length - 1)) / (max - 1))]);
  return [...new Set(out)];
}

async function stepsOf(ctx: ViewContext, runId: string, layer: string): Promise<number[]> {
  const rows = await ctx.store.query(Q.layerStepsSql({ run: runId, layer }));
  return rows.map((r) => num(r.step));
}

/**
 * Steps of the layer that hold neuron labels, oldest first: every checkpoint's, less those whose
 * labels label retention removed (their layer metrics stay, so stepsOf still lists them).
 */
async function labelStepsOf(ctx: ViewContext, runId: string, layer: string): Promise<number[]> {
  const rows = await ctx.store.query(Q.labelStepsSql({ run: runId, layer }));
  return rows.map((r) => num(r.step)).reverse();
}

export async function layerView(ctx: ViewContext, runId: string, layerName: string): Promise<LayerAnswer> {
  const run = await findRun(ctx, runId);
  const layer = await findLayer(ctx, runId, layerName);
  const steps = await stepsOf(ctx, runId, layerName);
  const heatSteps = sampleSteps(steps, HEAT_STRIP_MAX_STEPS);
  const [heatRows, shares, episodeRows] = await Promise.all([
    heatSteps.length > 0
      ? ctx.store.query(Q.heatStripSql({ run: runId, layer: layerName, steps: heatSteps }))
      : Promise.resolve([]),
    ctx.store.query(Q.categorySharesSql({ run: runId, layer: layerName, by: 'step' })),
    ctx.store.query(Q.alertEpisodesSql({ run: runId })),
  ]);
  const categories: string[] = [];
  const categoryIndex = new Map<string, number>();
  const conceptNames: string[] = [];
  const conceptIndex = new Map<string, number>();
  const indexOf = (names: string[], index: Map<string, number>, name: string): number => {
    let k = index.get(name);
    if (k === undefined) {
      k = names.length;
      names.push(name);
      index.set(name, k);
    }
    return k;
  };
  const column = new Map(heatSteps.map((s, i) => [s, i]));
  let cells = 0;
  const heat = heatRows.map((r) => {
    const cats = new Array<number>(heatSteps.length).fill(-1);
    const concepts = new Array<number>(heatSteps.length).fill(-1);
    const rs = r.steps as unknown[];
    const rc = r.concepts as string[];
    const rk = r.categories as string[];
    rs.forEach((s, i) => {
      const col = column.get(num(s));
      if (col === undefined) return;
      cats[col] = indexOf(categories, categoryIndex, rk[i]);
      concepts[col] = indexOf(conceptNames, conceptIndex, rc[i]);
      cells++;
    });
    return { neuron: num(r.neuron), categories: cats, concepts };
  });
  return {
    run,
    layer,
    steps,
    heatSteps,
    heat,
    categories,
    conceptNames,
    heatRows: cells,
    shares: shares.map((r) => ({ step: num(r.step), category: str(r.category), share: num(r.share) })),
    episodes: episodes(episodeRows).filter((e) => e.layer === layerName),
  };
}

export async function switchingView(
  ctx: ViewContext,
  runId: string,
  layerName: string,
): Promise<SwitchingAnswer> {
  await findRun(ctx, runId);
  await findLayer(ctx, runId, layerName);
  const recorded = await switchesRecorded(ctx.store, runId, layerName);
  const args = { run: runId, layer: layerName, limit: 15 };
  const rows = await ctx.store.query(
    recorded ? Q.switchingNeuronsSql(args) : Q.switchingNeuronsFromSequencesSql(args),
  );
  return {
    switching: rows.map((r) => ({
      neuron: num(r.neuron),
      switches: num(r.switches),
      concepts: str(r.concepts),
    })),
    from: recorded ? 'recorded' : 'sequences',
  };
}

/** Layers (run, layer) whose switches are recorded, per store, once a row proves it (it stays so). */
const switchLayersSeen = new WeakMap<Store, Set<string>>();

/**
 * Whether a layer's switches can be read from the rows' previous concept (libs/queries,
 * switchingLayerModeSql): not in a store without the column (a reader never migrates) nor for a
 * layer recorded before migration 6, which gets the sequence form (same answers, slower).
 */
async function switchesRecorded(store: Store, runId: string, layer: string): Promise<boolean> {
  const key = JSON.stringify([runId, layer]);
  let seen = switchLayersSeen.get(store);
  if (seen?.has(key)) return true;
  const [c] = await store.query(Q.hasColumnSql({ table: TABLES.neuronLabels, column: 'previous_concept' }));
  if (num(c?.n ?? 0) === 0) return false;
  const [r] = await store.query(Q.switchingLayerModeSql({ run: runId, layer }));
  const recorded = num(r?.recorded ?? 0) === 1;
  if (recorded && num(r?.proven ?? 0) === 1) {
    if (!seen) switchLayersSeen.set(store, (seen = new Set()));
    seen.add(key);
  }
  return recorded;
}

function mapPoints(rows: Row[]): MapPoint[] {
  return rows.map((r) => ({
    neuron: num(str(r.neuron_id).slice(1)),
    x: num(r.x),
    y: num(r.y),
    concept: str(r.concept),
    category: str(r.category),
    score: num(r.score),
  }));
}

/** The step of `steps` nearest to `want` (the later one on ties); null for no steps. */
export function nearestStep(steps: readonly number[], want: number): number | null {
  let best: number | null = null;
  for (const s of steps) if (best === null || Math.abs(s - want) <= Math.abs(best - want)) best = s;
  return best;
}

/** The bundle's concepts on its fixed 2D map (cached per bundle: the map never moves). */
const placesCache = new WeakMap<BundleDirectory, Map<string, ConceptPlace[]>>();
export function conceptPlaces(bundles: BundleDirectory, bundleId: string): ConceptPlace[] {
  let byId = placesCache.get(bundles);
  if (!byId) placesCache.set(bundles, (byId = new Map()));
  const cached = byId.get(bundleId);
  if (cached) return cached;
  const { space } = bundles.get(bundleId);
  const { rows, cols, data } = space.conceptEmbeddings;
  const places: ConceptPlace[] = [];
  for (let i = 0; i < rows; i++) {
    const { x, y } = projectTo2d(space, data.subarray(i * cols, (i + 1) * cols));
    places.push({ concept: space.concepts[i], category: space.categories[i], x, y });
  }
  byId.set(bundleId, places);
  return places;
}

function placesOrNote(ctx: ViewContext, bundleId: string): { concepts: ConceptPlace[]; note: string | null } {
  try {
    return { concepts: conceptPlaces(ctx.bundles, bundleId), note: null };
  } catch (e) {
    if (e instanceof CmError && (e.code === 'NOT_FOUND' || e.code === 'INVALID_ARGUMENT'))
      return {
        concepts: [],
        note: `probe bundle ${bundleId} is not in ${ctx.bundles.root}: concept names are not drawn`,
      };
    throw e;
  }
}

export interface MapQuery {
  step?: number;
  /** Neurons whose paths to draw. */
  trail?: number[];
  /** A second run to overlay. */
  overlay?: string;
}

export async function mapView(
  ctx: ViewContext,
  runId: string,
  layerName: string,
  q: MapQuery,
): Promise<MapAnswer> {
  const run = await findRun(ctx, runId);
  const layer = await findLayer(ctx, runId, layerName);
  // the slider offers the steps that have labels to place: a thinned step would be an empty map
  const steps = await labelStepsOf(ctx, runId, layerName);
  if (q.step !== undefined && !steps.includes(q.step)) {
    const thinned = run.thinned !== '' && (await stepsOf(ctx, runId, layerName)).includes(q.step);
    throw missing(
      'step',
      String(q.step),
      thinned
        ? `the labels of step ${q.step} were removed by label retention (${run.thinned}); the nearest step with labels is ${nearestStep(steps, q.step) ?? '-'}`
        : `layer ${layerName} has steps ${steps[0] ?? '-'}..${steps.at(-1) ?? '-'}`,
    );
  }
  const step = q.step ?? steps.at(-1) ?? 0;
  const { concepts, note } = placesOrNote(ctx, run.bundleId);
  const trail = (q.trail ?? []).slice(0, 24);
  const [pointRows, pathRows] = await Promise.all([
    steps.length > 0 ? ctx.store.query(Q.conceptMapSql({ run: runId, layer: layerName, step })) : [],
    trail.length > 0
      ? ctx.store.query(Q.neuronPathsSql({ run: runId, layer: layerName, neurons: trail }))
      : [],
  ]);
  const paths = new Map<number, MapAnswer['paths'][number]>();
  for (const r of pathRows) {
    const neuron = num(r.neuron);
    if (!paths.has(neuron)) paths.set(neuron, { neuron, points: [] });
    paths.get(neuron)!.points.push({ step: num(r.step), x: num(r.x), y: num(r.y), concept: str(r.concept) });
  }
  let overlay: MapAnswer['overlay'] = null;
  if (q.overlay !== undefined) {
    const other = await findRun(ctx, q.overlay);
    const otherSteps = await labelStepsOf(ctx, q.overlay, layerName);
    const otherStep = nearestStep(otherSteps, step);
    if (otherStep === null)
      throw missing('layer', layerName, `run ${q.overlay} has no checkpoints of layer ${layerName}`);
    const rows = await ctx.store.query(
      Q.conceptMapSql({ run: q.overlay, layer: layerName, step: otherStep }),
    );
    overlay = { run: other, step: otherStep, points: mapPoints(rows) };
  }
  return {
    run,
    layer,
    steps,
    step,
    concepts,
    conceptsNote: note,
    points: mapPoints(pointRows),
    paths: [...paths.values()],
    overlay,
  };
}

/** Whether neuron_labels has the top_images column (cached per store once it is there). */
const evidenceSeen = new WeakSet<Store>();
async function hasEvidenceColumn(store: Store): Promise<boolean> {
  if (evidenceSeen.has(store)) return true;
  const [r] = await store.query(Q.hasColumnSql({ table: TABLES.neuronLabels, column: 'top_images' }));
  const has = num(r?.n ?? 0) > 0;
  if (has) evidenceSeen.add(store);
  return has;
}

export async function neuronView(
  ctx: ViewContext,
  runId: string,
  layerName: string,
  neuron: number,
): Promise<NeuronAnswer> {
  const run = await findRun(ctx, runId);
  const layer = await findLayer(ctx, runId, layerName);
  const evidenceColumn = await hasEvidenceColumn(ctx.store);
  const rows = await ctx.store.query(
    Q.neuronHistorySql({ run: runId, layer: layerName, neuron, withTopImages: evidenceColumn }),
  );
  if (rows.length === 0)
    throw missing(
      'neuron',
      String(neuron),
      `layer ${layerName} of run ${runId} has ${layer.width} neurons (0..${Math.max(0, layer.width - 1)})`,
    );
  let bundleAvailable = false;
  try {
    ctx.bundles.get(run.bundleId);
    bundleAvailable = true;
  } catch {
    bundleAvailable = false;
  }
  return {
    run,
    layer,
    neuron,
    evidenceColumn,
    bundleAvailable,
    history: rows.map((r) => ({
      step: num(r.step),
      concept: str(r.concept),
      category: str(r.category),
      score: num(r.score),
      interpretable: num(r.interpretable) === 1,
      dead: num(r.dead) === 1,
      topConcepts: (r.top_concepts as string[]) ?? [],
      topScores: ((r.top_scores as unknown[]) ?? []).map(num),
      topImages: ((r.top_images as unknown[]) ?? []).map(num),
    })),
  };
}

export async function compareView(
  ctx: ViewContext,
  runA: string,
  runB: string,
  layerWanted?: string,
): Promise<CompareAnswer> {
  const [a, b] = await Promise.all([findRun(ctx, runA), findRun(ctx, runB)]);
  const layerRows = await ctx.store.query(Q.comparisonLayersSql({ runA, runB }));
  const layers = layerRows.map((r) => str(r.layer));
  if (layerWanted !== undefined && !layers.includes(layerWanted))
    throw missing(
      'layer',
      layerWanted,
      `runs ${runA} and ${runB} have layers ${layers.join(', ') || '(none yet)'}`,
    );
  const layer = layerWanted ?? layers[0] ?? '';
  const [curveA, curveB, loss, shares, setupDifferences] = await Promise.all([
    layer ? ctx.store.query(Q.layerCurvesSql({ run: runA, layer })) : [],
    layer ? ctx.store.query(Q.layerCurvesSql({ run: runB, layer })) : [],
    ctx.store.query(Q.compareLossSql({ runA, runB })),
    layer ? ctx.store.query(Q.lastCategorySharesSql({ runs: [runA, runB], layer })) : [],
    Q.runSetupDifferences(ctx.store, runA, runB),
  ]);
  const tag = (rows: Row[], runId: string) => curves(rows).map((c) => ({ ...c, runId }));
  return {
    runs: [a, b],
    layers,
    layer,
    curves: [...tag(curveA, runA), ...tag(curveB, runB)],
    loss: loss.map((r) => ({ step: num(r.step), runId: str(r.run_id), value: num(r.loss) })),
    shares: shares.map((r) => ({
      runId: str(r.run_id),
      step: num(r.step),
      category: str(r.category),
      share: num(r.share),
    })),
    setupDifferences: setupDifferences.map((d) => ({ ...d })),
  };
}

// ---- existence checks for page URLs (404 pages), without the views' data ----

export async function runExists(ctx: ViewContext, runId: string): Promise<void> {
  await findRun(ctx, runId);
}

export async function layerExists(ctx: ViewContext, runId: string, layer: string): Promise<void> {
  await findRun(ctx, runId);
  await findLayer(ctx, runId, layer);
}

export async function neuronExists(
  ctx: ViewContext,
  runId: string,
  layer: string,
  neuron: number,
): Promise<void> {
  await findRun(ctx, runId);
  const info = await findLayer(ctx, runId, layer);
  if (info.width > 0 && neuron >= info.width)
    throw missing(
      'neuron',
      String(neuron),
      `layer ${layer} of run ${runId} has ${info.width} neurons (0..${info.width - 1})`,
    );
}
