/**
 * The JSON the web view's API answers with, one type per view. Shared by the server (libs/ui/src)
 * and the page (libs/ui/web), which esbuild compiles with these types erased.
 */

export interface RunRow {
  runId: string;
  model: string;
  paradigm: string;
  bundleId: string;
  status: string;
  startedAt: string;
  endedAt: string;
  checkpoints: number;
  lastStep: number | null;
  health: 'ok' | 'alerting';
  firingAlerts: number;
  firingRules: string[];
  /**
   * What label retention thinned of the run, in words ("labels: every 10th checkpoint up to step
   * 5000"; libs/store describeThinning); '' when nothing was. Layer metrics are never thinned.
   */
  thinned: string;
}

export interface RunsAnswer {
  store: string;
  runs: RunRow[];
}

export interface LayerInfo {
  name: string;
  width: number;
}

export interface AlertEpisode {
  alertId: string;
  layer: string;
  rule: string;
  severity: string;
  firedStep: number;
  /** null while the episode is open. */
  resolvedStep: number | null;
  value: number;
  threshold: number;
  message: string;
}

/** One layer's metrics at one checkpoint. */
export interface LayerCurvePoint {
  step: number;
  layer: string;
  neurons: number;
  /** Learned-concept share (beyond random init, docs/dissect.md); null while the run has no baseline. */
  learned: number | null;
  /** Association share: interpretable under the shuffle null (random filters pass it too). */
  interpretable: number;
  distinctShare: number;
  entropy: number;
  spread: number;
  dead: number;
  switchRate: number;
  meanTopScore: number;
}

export interface OverviewAnswer {
  run: RunRow;
  layers: LayerInfo[];
  /** (step, metric, value) for loss and accuracy. */
  training: { step: number; metric: string; value: number }[];
  curves: LayerCurvePoint[];
  episodes: AlertEpisode[];
}

export interface LayerAnswer {
  run: RunRow;
  layer: LayerInfo;
  /** Steps with labels, ascending (all of them). */
  steps: number[];
  /** Steps the heat strip shows (all steps, or an even sample of at most HEAT_STRIP_MAX_STEPS). */
  heatSteps: number[];
  /** Per neuron, the category (index into categories) and concept (index into conceptNames) at each of heatSteps; -1 = no label row. */
  heat: { neuron: number; categories: number[]; concepts: number[] }[];
  categories: string[];
  conceptNames: string[];
  /** Label rows the heat strip covers (what its cells count). */
  heatRows: number;
  shares: { step: number; category: string; share: number }[];
  episodes: AlertEpisode[];
}

/**
 * The neurons of a layer that switched label most often over the whole run. A request of its own:
 * it reads every label row of the layer (a full scan with FINAL), while the heat strip reads a
 * sample of steps, so the layer view draws without waiting for it.
 */
export interface SwitchingAnswer {
  switching: { neuron: number; switches: number; concepts: string }[];
  /**
   * Where the switches came from: 'recorded' (each row's previous concept, migration 6) or
   * 'sequences' (each neuron's labels rebuilt by step: layers recorded before it; slower).
   */
  from: 'recorded' | 'sequences';
}

export interface MapPoint {
  neuron: number;
  x: number;
  y: number;
  concept: string;
  category: string;
  score: number;
}

export interface ConceptPlace {
  concept: string;
  category: string;
  x: number;
  y: number;
}

export interface MapAnswer {
  run: RunRow;
  layer: LayerInfo;
  /** Steps with labels, oldest first (the slider's): a step whose labels retention removed is not one. */
  steps: number[];
  step: number;
  /** The bundle's concepts on its fixed map; empty with `conceptsNote` when the bundle is not at hand. */
  concepts: ConceptPlace[];
  conceptsNote: string | null;
  points: MapPoint[];
  paths: { neuron: number; points: { step: number; x: number; y: number; concept: string }[] }[];
  /** A second run drawn on the same map, at its step nearest to `step`. */
  overlay: { run: RunRow; step: number; points: MapPoint[] } | null;
}

export interface NeuronStep {
  step: number;
  concept: string;
  category: string;
  score: number;
  interpretable: boolean;
  dead: boolean;
  topConcepts: string[];
  topScores: number[];
  /** Indices into the bundle's probe images, best first; empty when the store holds no evidence. */
  topImages: number[];
}

export interface NeuronAnswer {
  run: RunRow;
  layer: LayerInfo;
  neuron: number;
  history: NeuronStep[];
  /** Whether the store has the top_images column at all (the evidence migration ran). */
  evidenceColumn: boolean;
  /** Whether the run's bundle is in the bundle folder (images can be served). */
  bundleAvailable: boolean;
}

export interface CompareAnswer {
  runs: [RunRow, RunRow];
  layers: string[];
  layer: string;
  /** Both runs' curves of `layer`. */
  curves: (LayerCurvePoint & { runId: string })[];
  loss: { step: number; runId: string; value: number }[];
  /** Category shares at each run's last checkpoint of `layer`. */
  shares: { runId: string; step: number; category: string; share: number }[];
  /**
   * Where the two runs' setups (method, parameters, pooling, calibration, concept set, CLIP model;
   * runs.setup_*) differ; empty when they agree or a run predates the setup columns. The page
   * warns: scores of different setups do not compare directly.
   */
  setupDifferences: SetupDifferenceRow[];
}

export interface SetupDifferenceRow {
  /** The runs table's column (setup_method, concept_set_hash, ...). */
  column: string;
  label: string;
  a: string;
  b: string;
  /** In words, as `cm report --compare` says it ("method soft_wpmi vs wpmi", "concept set"). */
  text: string;
}

export interface ApiError {
  error: string;
  /** What was not found (run, layer, neuron, bundle, image) and its value. */
  missing?: { kind: string; value: string };
  hint?: string;
  /** The store could not be reached: the page says so and retries. */
  unavailable?: boolean;
}

export const HEAT_STRIP_MAX_STEPS = 160;
