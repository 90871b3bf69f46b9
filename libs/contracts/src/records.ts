/**
 * Records: what the concept engine produces, what travels through JetStream (as JSON) and what the
 * recorder writes into ClickHouse, one shape end to end. Times are ISO-8601 strings in UTC.
 * `validateRecord` checks a decoded message before it is stored.
 */
/**
 * How a run's scores were made. Scores compare only within one method, its parameters, pooling
 * and concept set (CLIP-Dissect's maintainers say so), so every run carries its setup and a
 * comparison can say when two runs' setups differ.
 */
export interface RunSetup {
  /** Similarity function (soft_wpmi, wpmi, cos, ...). */
  method: string;
  /** Its parameters with the defaults filled in, as JSON. */
  params: string;
  /** How [D, H, W, C] outputs become [D, C]: the service pools with the chunk's pooling (avg unless max). */
  pooling: string;
  /** How `interpretable` is decided (the calibration rule, or a fixed threshold). */
  calibration: string;
  /** sha256 of the probe bundle's concepts and categories, in order. */
  conceptSetHash: string;
  /** The CLIP model P came from, empty for labelled (ground-truth) bundles. */
  clipModel: string;
  /** Concept-Monitor's version. */
  codeVersion: string;
}

export interface RunRecord {
  kind: 'run';
  runId: string;
  model: string;
  paradigm: string;
  bundleId: string;
  layers: { name: string; width: number }[];
  tags: Record<string, string>;
  /** abandoned: no stream for CM_SERVICE_RUN_IDLE_MS (its trainer died or went away); a resume makes it running again. */
  status: 'running' | 'completed' | 'failed' | 'abandoned';
  startedAt: string;
  /** Set when status is completed or failed. */
  endedAt?: string;
  /** Absent in records from before the setup was recorded (it reads as empty strings). */
  setup?: RunSetup;
  time: string;
}

export interface CheckpointRecord {
  kind: 'checkpoint';
  runId: string;
  step: number;
  /** Training metrics: loss, accuracy, learningRate, sparsity, ... */
  metrics: Record<string, number>;
  time: string;
}

export interface NeuronLabelRow {
  neuron: number;
  concept: string;
  category: string;
  score: number;
  interpretable: boolean;
  dead: boolean;
  topConcepts: string[];
  topScores: number[];
  /**
   * Evidence: indices of the neuron's top activating probe images (into the bundle's probe images),
   * best first (8 by default). Producers before this field send none; stored as [].
   */
  topImages: number[];
  x: number;
  y: number;
  /**
   * The neuron's concept at the run's previous checkpoint of this layer ('' at the first one): a
   * label switch is a row with previousConcept not '' and unlike concept, recorded when the
   * checkpoint is dissected, so the switching questions read the switches without rebuilding every
   * neuron's sequence. Producers before this field send none; stored as ''.
   */
  previousConcept?: string;
}

/** One layer's neuron labels at one step; large layers are split into parts (each < 1 MB). */
export interface LabelsRecord {
  kind: 'labels';
  runId: string;
  layer: string;
  step: number;
  part: number;
  parts: number;
  labels: NeuronLabelRow[];
  time: string;
}

export interface LayerSnapshotRecord {
  kind: 'snapshot';
  runId: string;
  layer: string;
  step: number;
  neurons: number;
  interpretableFraction: number;
  meanTopScore: number;
  distinctConceptShare: number;
  labelEntropy: number;
  embeddingSpread: number;
  deadFraction: number;
  switches: number;
  switchFraction: number;
  threshold: number;
  /**
   * The learned-concept figure (docs/dissect.md, "Learned concepts"): share of neurons interpretable
   * beyond the same layer at random initialisation, chance-corrected. null (or absent, from older
   * writers) while the run's architecture has no random-init baseline on this bundle yet.
   * interpretableFraction is the association figure (shuffle null) beside it.
   */
  learnedFraction?: number | null;
  /** The chance rate the learned figure was corrected by (leave-one-out over the baseline's inits); null as above. */
  learnedChance?: number | null;
  categoryShares: Record<string, number>;
  topConcepts: { concept: string; count: number }[];
  time: string;
}

export interface AlertRecord {
  kind: 'alert';
  /** Stable id of the episode: the firing and its resolution share it. */
  alertId: string;
  runId: string;
  layer: string;
  step: number;
  rule: string;
  state: 'firing' | 'resolved';
  severity: 'warning' | 'critical';
  value: number;
  threshold: number;
  message: string;
  time: string;
}

export type CmRecord = RunRecord | CheckpointRecord | LabelsRecord | LayerSnapshotRecord | AlertRecord;

export class RecordValidationError extends Error {
  constructor(readonly problem: string) {
    super(`invalid record: ${problem}`);
    this.name = 'RecordValidationError';
  }
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const UINT32_MAX = 0xffffffff;
/** A list of UInt32 indices (probe image indices). */
export const isIndexList = (v: unknown): v is number[] =>
  Array.isArray(v) && v.every((k) => isInt(k) && k <= UINT32_MAX);

/**
 * Structural check of a decoded message (hand-written rather than a schema library: it runs on every
 * record in the recorder's hot path, and only a handful of fields decide whether a row can be stored).
 */
export function validateRecord(value: unknown): CmRecord {
  const fail = (p: string): never => {
    throw new RecordValidationError(p);
  };
  if (typeof value !== 'object' || value === null) return fail('not an object');
  const r = value as Record<string, unknown>;
  if (!isStr(r.runId) || r.runId.length === 0) fail('runId missing');
  if (!isStr(r.time) || Number.isNaN(Date.parse(r.time))) fail('time is not an ISO date');
  switch (r.kind) {
    case 'run':
      if (!isStr(r.bundleId) || !Array.isArray(r.layers)) fail('run: bundleId or layers missing');
      break;
    case 'checkpoint':
      if (!isInt(r.step) || typeof r.metrics !== 'object' || r.metrics === null)
        fail('checkpoint: step or metrics');
      break;
    case 'labels':
      if (!isStr(r.layer) || !isInt(r.step) || !Array.isArray(r.labels))
        fail('labels: layer, step or labels');
      for (const l of r.labels as unknown[]) {
        const row = l as Record<string, unknown>;
        if (!isInt(row.neuron) || !isStr(row.concept) || !isNum(row.score)) fail('labels: bad neuron row');
        if (row.topImages !== undefined && !isIndexList(row.topImages))
          fail('labels: topImages is not a list of image indices');
        if (row.previousConcept !== undefined && !isStr(row.previousConcept))
          fail('labels: previousConcept is not a string');
      }
      break;
    case 'snapshot':
      if (!isStr(r.layer) || !isInt(r.step) || !isNum(r.interpretableFraction))
        fail('snapshot: layer, step or metrics');
      break;
    case 'alert':
      if (!isStr(r.alertId) || !isStr(r.rule) || (r.state !== 'firing' && r.state !== 'resolved'))
        fail('alert: id, rule or state');
      break;
    default:
      fail(`unknown kind ${String(r.kind)}`);
  }
  return value as CmRecord;
}
