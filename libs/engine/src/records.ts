/**
 * From dissections to records (the shapes of @cm/contracts that travel through JetStream and land
 * in ClickHouse), and from records to the trainer-facing CheckpointResult. Pure and deterministic:
 * the same dissection and time give byte-identical records, which is what makes a resend harmless.
 */
import { MAX_MESSAGE_BYTES } from '@cm/contracts';
import type {
  AlertRecord,
  CheckpointRecord,
  CheckpointResult,
  LabelsRecord,
  LayerSnapshotRecord,
  NeuronLabelRow,
} from '@cm/contracts';
import type { LayerDissection, NeuronLabel } from '@cm/dissect';

/** Room left for the record's envelope (kind, run, layer, ...) and the bus' framing. */
const LABEL_PART_BUDGET = MAX_MESSAGE_BYTES - 16 * 1024;
/** Top concepts reported to the trainer per layer. */
export const RESULT_TOP_CONCEPTS = 5;

/**
 * A neuron's label as a stored row; `previousConcept` is its concept at the run's previous checkpoint
 * of the layer ('' at the first): the switch is recorded with the label (NeuronLabel.switched).
 */
export function labelRow(l: NeuronLabel, previousConcept = ''): NeuronLabelRow {
  return {
    neuron: l.neuron,
    concept: l.concept,
    category: l.category,
    score: l.score,
    interpretable: l.interpretable,
    dead: l.dead,
    topConcepts: [...l.topConcepts],
    topScores: [...l.topScores],
    topImages: [...l.topImages],
    x: l.x,
    y: l.y,
    previousConcept,
  };
}

/**
 * One layer's labels as LabelsRecords of less than MAX_MESSAGE_BYTES each. The split depends only
 * on the rows, so a recomputed checkpoint splits into the same parts (same message ids).
 */
export function labelsRecords(
  runId: string,
  layer: string,
  step: number,
  rows: NeuronLabelRow[],
  time: string,
): LabelsRecord[] {
  const groups: NeuronLabelRow[][] = [];
  let current: NeuronLabelRow[] = [];
  let size = 0;
  for (const row of rows) {
    const rowBytes = Buffer.byteLength(JSON.stringify(row)) + 1;
    if (current.length > 0 && size + rowBytes > LABEL_PART_BUDGET) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(row);
    size += rowBytes;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  return groups.map((labels, part) => ({
    kind: 'labels',
    runId,
    layer,
    step,
    part,
    parts: groups.length,
    labels,
    time,
  }));
}

export function snapshotRecord(
  runId: string,
  layer: string,
  step: number,
  d: LayerDissection,
  time: string,
  learned: { learnedFraction: number; learnedChance: number } | null = null,
): LayerSnapshotRecord {
  const m = d.metrics;
  return {
    kind: 'snapshot',
    runId,
    layer,
    step,
    neurons: m.neurons,
    interpretableFraction: m.interpretableFraction,
    meanTopScore: m.meanTopScore,
    distinctConceptShare: m.distinctConceptShare,
    labelEntropy: m.labelEntropy,
    embeddingSpread: m.embeddingSpread,
    deadFraction: m.deadFraction,
    switches: m.switches,
    switchFraction: m.switchFraction,
    threshold: m.threshold,
    learnedFraction: learned ? learned.learnedFraction : null,
    learnedChance: learned ? learned.learnedChance : null,
    categoryShares: { ...m.categoryShares },
    topConcepts: d.topConcepts.map((c) => ({ concept: c.concept, count: c.count })),
    time,
  };
}

export function checkpointRecord(
  runId: string,
  step: number,
  metrics: Record<string, number>,
  time: string,
): CheckpointRecord {
  return { kind: 'checkpoint', runId, step, metrics: { ...metrics }, time };
}

export function checkpointResult(
  step: number,
  snapshots: LayerSnapshotRecord[],
  alerts: AlertRecord[],
): CheckpointResult {
  return {
    step,
    layers: snapshots.map((s) => ({
      layer: s.layer,
      learnedFraction: s.learnedFraction ?? null,
      interpretableFraction: s.interpretableFraction,
      distinctConceptShare: s.distinctConceptShare,
      labelEntropy: s.labelEntropy,
      topConcepts: s.topConcepts.slice(0, RESULT_TOP_CONCEPTS),
    })),
    alerts: alerts.map((a) => ({ layer: a.layer, rule: a.rule, state: a.state, message: a.message })),
  };
}
