import { invalidArgument, mulberry32 } from '@cm/core';
import type {
  AlertRecord,
  CheckpointRecord,
  LabelsRecord,
  LayerSnapshotRecord,
  NeuronLabelRow,
  RunRecord,
} from '@cm/contracts';
import { CollapseDetector, type CollapseRulesConfig } from './collapse';

/**
 * A replayable synthetic run: labels and snapshots whose concepts stay diverse (healthy) or, inside
 * a collapse window, converge onto one concept and recover afterwards. It is what the alert tests
 * and `cm alerts replay` feed the detector to show an engineered collapse end to end, and the
 * snapshot fields are derived from the labels the same way the engine summarises a layer (share of
 * distinct top-1 concepts, normalised entropy, top concepts, category shares).
 */
export interface SyntheticRunOptions {
  runId: string;
  layers?: { name: string; width: number }[];
  steps: number;
  /** Steps between checkpoints. */
  stepEvery?: number;
  /** Checkpoint indexes [from, to) during which the named layer's concepts converge. */
  collapse?: { layer: string; from: number; to: number };
  startTime?: string;
  /** Seconds between checkpoints in the records' time. */
  secondsPerCheckpoint?: number;
  seed?: number;
}

export interface SyntheticRun {
  run: RunRecord;
  checkpoints: CheckpointRecord[];
  labels: LabelsRecord[];
  snapshots: LayerSnapshotRecord[];
}

const CONCEPTS: { concept: string; category: string }[] = [
  ['red', 'color'],
  ['blue', 'color'],
  ['green', 'color'],
  ['yellow', 'color'],
  ['striped', 'texture'],
  ['dotted', 'texture'],
  ['furry', 'texture'],
  ['grid', 'texture'],
  ['circle', 'shape'],
  ['square', 'shape'],
  ['triangle', 'shape'],
  ['wheel', 'object'],
  ['dog', 'object'],
  ['cat', 'object'],
  ['car', 'object'],
  ['tree', 'object'],
  ['sky', 'scene'],
  ['road', 'scene'],
  ['water', 'scene'],
  ['grass', 'scene'],
].map(([concept, category]) => ({ concept, category }));
const COLLAPSE_CONCEPT = 4; // 'striped'

/** Collapse strength at checkpoint k: ramps to 1 over two checkpoints, holds, then releases. */
function collapseStrength(k: number, window: { from: number; to: number } | undefined): number {
  if (!window || k < window.from || k >= window.to) return 0;
  return Math.min(1, (k - window.from + 1) / 2) * 0.95;
}

export function summariseLayer(
  runId: string,
  layer: string,
  step: number,
  labels: NeuronLabelRow[],
  previous: NeuronLabelRow[] | undefined,
  time: string,
  threshold: number,
): LayerSnapshotRecord {
  const n = labels.length;
  const counts = new Map<string, number>();
  const categories = new Map<string, number>();
  let interpretable = 0;
  let dead = 0;
  let scoreSum = 0;
  let sx = 0;
  let sy = 0;
  for (const l of labels) {
    counts.set(l.concept, (counts.get(l.concept) ?? 0) + 1);
    scoreSum += l.score;
    sx += l.x;
    sy += l.y;
    if (l.dead) dead++;
    if (l.interpretable) {
      interpretable++;
      categories.set(l.category, (categories.get(l.category) ?? 0) + 1);
    }
  }
  let entropy = 0;
  for (const c of counts.values()) entropy -= (c / n) * Math.log(c / n);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 5);
  let spread = 0;
  for (const l of labels) spread += Math.hypot(l.x - sx / n, l.y - sy / n);
  let switches = 0;
  if (previous)
    for (let i = 0; i < n; i++) if (previous[i] && previous[i].concept !== labels[i].concept) switches++;
  return {
    kind: 'snapshot',
    runId,
    layer,
    step,
    neurons: n,
    interpretableFraction: interpretable / n,
    meanTopScore: scoreSum / n,
    distinctConceptShare: counts.size / n,
    labelEntropy: n > 1 ? entropy / Math.log(n) : 0,
    embeddingSpread: spread / n,
    deadFraction: dead / n,
    switches,
    switchFraction: switches / n,
    threshold,
    categoryShares: Object.fromEntries(
      [...categories].map(([c, k]) => [c, interpretable ? k / interpretable : 0]),
    ),
    topConcepts: top.map(([concept, count]) => ({ concept, count })),
    time,
  };
}

export function syntheticRun(options: SyntheticRunOptions): SyntheticRun {
  const layers = options.layers ?? [
    { name: 'conv1', width: 16 },
    { name: 'conv2', width: 24 },
  ];
  if (!Number.isInteger(options.steps) || options.steps < 1)
    throw invalidArgument(`steps must be a positive integer, got ${options.steps}`);
  if (options.collapse && !layers.some((l) => l.name === options.collapse?.layer)) {
    throw invalidArgument(`collapse layer ${options.collapse.layer} is not one of the run's layers`, {
      layers: layers.map((l) => l.name),
    });
  }
  const stepEvery = options.stepEvery ?? 100;
  const t0 = Date.parse(options.startTime ?? '2024-05-01T12:00:00.000Z');
  const dt = (options.secondsPerCheckpoint ?? 60) * 1000;
  const rand = mulberry32(options.seed ?? 7);
  const timeAt = (k: number): string => new Date(t0 + k * dt).toISOString();
  const threshold = 0.2;

  const run: RunRecord = {
    kind: 'run',
    runId: options.runId,
    model: 'synthetic-cnn',
    paradigm: 'standard',
    bundleId: 'synthetic',
    layers,
    tags: { source: 'syntheticRun' },
    status: 'completed',
    startedAt: timeAt(0),
    endedAt: timeAt(options.steps - 1),
    time: timeAt(options.steps - 1),
  };
  const checkpoints: CheckpointRecord[] = [];
  const labels: LabelsRecord[] = [];
  const snapshots: LayerSnapshotRecord[] = [];
  const previous = new Map<string, NeuronLabelRow[]>();
  // Each neuron has a "home" concept it drifts around; early checkpoints are less interpretable.
  const home = new Map(
    layers.map((l) => [l.name, Array.from({ length: l.width }, () => Math.floor(rand() * CONCEPTS.length))]),
  );

  for (let k = 0; k < options.steps; k++) {
    const step = k * stepEvery;
    const progress = (k + 1) / options.steps;
    checkpoints.push({
      kind: 'checkpoint',
      runId: options.runId,
      step,
      metrics: {
        loss: 2.3 * Math.exp(-2 * progress) + 0.05 * rand(),
        accuracy: 0.1 + 0.8 * progress * (0.95 + 0.05 * rand()),
        learningRate: 0.01,
      },
      time: timeAt(k),
    });
    for (const layer of layers) {
      const strength = options.collapse?.layer === layer.name ? collapseStrength(k, options.collapse) : 0;
      const homes = home.get(layer.name) as number[];
      const rows: NeuronLabelRow[] = homes.map((h, neuron) => {
        const converged = rand() < strength;
        // Healthy neurons occasionally switch to a neighbouring concept.
        const idx = converged ? COLLAPSE_CONCEPT : rand() < 0.15 ? (h + 1) % CONCEPTS.length : h;
        const { concept, category } = CONCEPTS[idx];
        const score = Math.min(1, 0.1 + 0.5 * progress + 0.3 * rand());
        const angle = (2 * Math.PI * idx) / CONCEPTS.length;
        const radius = converged ? 0.1 : 1;
        const x = radius * Math.cos(angle) + 0.05 * (rand() - 0.5) + 0.02 * neuron;
        const y = radius * Math.sin(angle) + 0.05 * (rand() - 0.5);
        const second = CONCEPTS[(idx + 3) % CONCEPTS.length].concept;
        return {
          neuron,
          concept,
          category,
          score,
          interpretable: score >= threshold,
          dead: false,
          topConcepts: [concept, second],
          topScores: [score, score * 0.8],
          // the synthetic bundle has no probe images, so there is no evidence to point at
          topImages: [],
          x,
          y,
        };
      });
      labels.push({
        kind: 'labels',
        runId: options.runId,
        layer: layer.name,
        step,
        part: 0,
        parts: 1,
        labels: rows,
        time: timeAt(k),
      });
      snapshots.push(
        summariseLayer(options.runId, layer.name, step, rows, previous.get(layer.name), timeAt(k), threshold),
      );
      previous.set(layer.name, rows);
    }
  }
  return { run, checkpoints, labels, snapshots };
}

/** Run a snapshot stream through a fresh detector; the alerts in the order they were raised. */
export function replaySnapshots(
  rules: CollapseRulesConfig,
  snapshots: readonly LayerSnapshotRecord[],
): AlertRecord[] {
  const detector = new CollapseDetector(rules);
  return snapshots.flatMap((s) => detector.observe(s));
}
