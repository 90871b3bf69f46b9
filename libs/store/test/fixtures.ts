import type {
  AlertRecord,
  CheckpointRecord,
  CmRecord,
  LabelsRecord,
  LayerSnapshotRecord,
  NeuronLabelRow,
  RunRecord,
} from '@cm/contracts';

/** Test records of every kind, with the strings a trainer might send (quotes, backslashes, unicode). */
export const NASTY_RUN_ID = "run 'o\\ne'; DROP TABLE runs --\n ü";
export const NASTY_LAYER = "block.1/conv'2";

export function runRecord(
  runId: string,
  status: RunRecord['status'] = 'running',
  time = '2026-01-01T00:00:00.000Z',
): RunRecord {
  return {
    kind: 'run',
    runId,
    model: 'cnn-small',
    paradigm: 'standard',
    bundleId: 'bundle-1',
    layers: [
      { name: NASTY_LAYER, width: 4 },
      { name: 'fc', width: 3 },
    ],
    tags: { owner: "o'hara", seed: '7' },
    status,
    startedAt: '2026-01-01T00:00:00.000Z',
    ...(status === 'running' ? {} : { endedAt: time }),
    time,
  };
}

export function checkpointRecord(runId: string, step: number, loss = 1 / (step + 1)): CheckpointRecord {
  return {
    kind: 'checkpoint',
    runId,
    step,
    metrics: { loss, accuracy: 0.5, learningRate: 0.001 },
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, step)).toISOString(),
  };
}

export function labelRows(width: number, step: number): NeuronLabelRow[] {
  return Array.from({ length: width }, (_, neuron) => ({
    neuron,
    concept: ['dog', 'cat', "o'clock", 'stripes\\x'][(neuron + step) % 4],
    category: ['object', 'object', 'scene', 'texture'][(neuron + step) % 4],
    score: 0.1 + neuron / 100,
    interpretable: neuron % 2 === 0,
    dead: neuron === width - 1,
    topConcepts: ['dog', 'cat', 'sky'],
    topScores: [0.3, 0.2, 0.1],
    topImages: [(neuron * 7) % 10, 3, 4294967295, 0, 11, 12, 13, 14], // 8, as the engine keeps
    x: neuron * 0.5,
    y: -neuron * 0.25,
  }));
}

export function labelsRecord(
  runId: string,
  layer: string,
  step: number,
  width: number,
  time?: string,
): LabelsRecord {
  return {
    kind: 'labels',
    runId,
    layer,
    step,
    part: 0,
    parts: 1,
    labels: labelRows(width, step),
    time: time ?? new Date(Date.UTC(2026, 0, 1, 0, 0, step)).toISOString(),
  };
}

export function snapshotRecord(runId: string, layer: string, step: number): LayerSnapshotRecord {
  return {
    kind: 'snapshot',
    runId,
    layer,
    step,
    neurons: 4,
    interpretableFraction: 0.5,
    meanTopScore: 0.12,
    distinctConceptShare: 0.75,
    labelEntropy: 1.5,
    embeddingSpread: 0.9,
    deadFraction: 0.25,
    switches: 1,
    switchFraction: 0.25,
    threshold: 0.05,
    categoryShares: { object: 0.5, scene: 0.25, texture: 0.25 },
    topConcepts: [
      { concept: 'dog', count: 2 },
      { concept: "o'clock", count: 1 },
    ],
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, step)).toISOString(),
  };
}

export function alertRecord(runId: string, state: AlertRecord['state'], step: number): AlertRecord {
  return {
    kind: 'alert',
    alertId: `${runId}:fc:diversity_drop:1`,
    runId,
    layer: 'fc',
    step,
    rule: 'diversity_drop',
    state,
    severity: 'warning',
    value: 0.1,
    threshold: 0.3,
    message: "diversity of 'fc' dropped",
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, step)).toISOString(),
  };
}

/** A small run: run start, `steps` checkpoints of two layers, one alert episode, run end. */
export function sampleRun(runId: string, steps = 3): CmRecord[] {
  const out: CmRecord[] = [runRecord(runId)];
  for (let step = 0; step < steps; step++) {
    out.push(checkpointRecord(runId, step * 100));
    out.push(labelsRecord(runId, NASTY_LAYER, step * 100, 4), snapshotRecord(runId, NASTY_LAYER, step * 100));
    out.push(labelsRecord(runId, 'fc', step * 100, 3), snapshotRecord(runId, 'fc', step * 100));
  }
  out.push(alertRecord(runId, 'firing', 100));
  return out;
}
