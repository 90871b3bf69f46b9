import * as tf from '@tensorflow/tfjs';
import type { Monitor } from '@cm/contracts';
import { invalidArgument } from '@cm/core';
import { checkAttack, type AttackSpec } from './adversarial';
import { loadCheckpoint, type NamedTensor, type SavedCheckpoint } from './checkpoint';
import type { ImageDataset } from './data';
import { applyMasks, fullMasks, pruneMasks, restoreWeights, snapshotWeights, sparsity } from './lottery';
import { blockNamesOf, buildModel, LOGITS, selectLayers, type BuiltModel, type ModelSpec } from './models';
import { diversityLayers, type DiversityRegOptions } from './diversity';
import { trainRun, type ProbeImages, type TrainObserver, type TrainRunResult } from './loop';

export const PARADIGMS = ['standard', 'finetune', 'adversarial', 'lottery'] as const;
export type Paradigm = (typeof PARADIGMS)[number];

export function parseParadigm(value: string): Paradigm {
  if (!(PARADIGMS as readonly string[]).includes(value)) {
    throw invalidArgument(
      `unknown paradigm '${value}'`,
      { paradigm: value },
      `use one of ${PARADIGMS.join(', ')}`,
    );
  }
  return value as Paradigm;
}

export interface FinetuneSpec {
  /** Checkpoint folder of the source model (written by a previous run). */
  from: string;
  /** Layers kept frozen: names, or 'blocks' for every block output layer and the layers before it. */
  freeze?: string[];
}

export interface LotterySpec {
  /** Pruning rounds after the dense round 0 (each is its own monitored run). */
  rounds: number;
  /** Fraction of remaining weights removed per round (per layer; half for the logits). */
  rate: number;
  /** Step whose weights the survivors are rewound to (0 = initialisation, as in the original paper). */
  rewindStep: number;
}

export interface TrainJob {
  paradigm: Paradigm;
  runId: string;
  train: ImageDataset;
  test?: ImageDataset;
  model: ModelSpec;
  steps: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  monitorEvery: number;
  layers?: string[];
  monitor?: Monitor;
  probe?: ProbeImages;
  tags?: Record<string, string>;
  checkpointDir?: string;
  checkpointEvery?: number;
  attack?: AttackSpec;
  finetune?: FinetuneSpec;
  lottery?: LotterySpec;
  /**
   * Weight of the concept-diversity regulariser (libs/train/src/diversity.ts; 0 or absent: off). It
   * covers the monitored layers but the logits, on batches of the probe images (`probe`, which must
   * carry the bundle's probeScores); `diversityBatch` probe images per step (default 32).
   */
  diversityReg?: number;
  diversityBatch?: number;
  /** Checkpoint folder to resume from (same paradigm and run id). */
  resumeFrom?: string;
  observer?: TrainObserver;
  signal?: AbortSignal;
  /** Fail the run when monitoring cannot start (trainRun's requireMonitor). */
  requireMonitor?: boolean;
  maxInFlight?: number;
}

export interface TrainJobResult {
  runs: TrainRunResult[];
  model: tf.LayersModel;
  modelName: string;
}

/**
 * A new head on a trained body: the source model up to its global pooling, then a fresh `logits`
 * layer for the target classes. `freeze` lists layers whose weights stay fixed.
 */
export function finetuneModel(
  source: tf.LayersModel,
  sourceName: string,
  classes: number,
  freeze: string[] = [],
  seed = 1,
): BuiltModel {
  const body = source.layers[source.layers.length - 2];
  if (!body || source.layers[source.layers.length - 1].name !== LOGITS) {
    throw invalidArgument(`the source model does not end in a '${LOGITS}' layer after its body`, {
      layers: source.layers.map((l) => l.name),
    });
  }
  const head = tf.layers.dense({
    units: classes,
    name: LOGITS,
    kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 500 }),
  });
  const logits = head.apply(body.output as tf.SymbolicTensor) as tf.SymbolicTensor;
  const model = tf.model({ inputs: source.inputs, outputs: logits, name: 'finetuned' });
  const names = model.layers.map((l) => l.name);
  const blocks = blockNamesOf(model);
  const frozen = new Set<string>();
  for (const f of freeze) {
    if (f === 'blocks' || f === 'body') names.filter((n) => n !== LOGITS).forEach((n) => frozen.add(n));
    else if (names.includes(f)) {
      // Freezing a block freezes everything up to it (a later trainable layer would undo the point).
      names.slice(0, names.indexOf(f) + 1).forEach((n) => frozen.add(n));
    } else
      throw invalidArgument(
        `cannot freeze '${f}': no such layer`,
        { layer: f },
        `layers: ${names.join(', ')}`,
      );
  }
  for (const l of model.layers) if (frozen.has(l.name)) l.trainable = false;
  return { model, name: `${sourceName}+ft`, blocks };
}

function modelFor(job: TrainJob, resumed?: SavedCheckpoint): Promise<BuiltModel> | BuiltModel {
  const [, h, w] = job.train.shape;
  const classes = job.train.classNames.length;
  if (resumed)
    return {
      model: resumed.model,
      name: resumed.state.modelName,
      blocks: resumed.state.blocks,
      spec: job.model,
    };
  if (job.paradigm === 'finetune') {
    if (!job.finetune)
      throw invalidArgument('fine-tuning needs a source checkpoint', {}, 'pass --from <checkpoint folder>');
    return loadCheckpoint(job.finetune.from).then((src) =>
      finetuneModel(src.model, src.state.modelName, classes, job.finetune!.freeze ?? [], job.seed),
    );
  }
  return buildModel(job.model, [h, w, 3], classes, job.seed);
}

/** Seeds of the learned-concept baseline's random initialisations: fixed, so every run of an architecture makes the same one. */
export const RANDOM_INIT_SEED = 1_000_001;

/**
 * Random initialisation k of a job's architecture (the learned-concept baseline): the built-in
 * models rebuilt from their spec with seed RANDOM_INIT_SEED + 1000 k; fine-tuning (a source
 * model with a new head) leaves it to watch()'s default, the model rebuilt with unseeded initializers.
 */
function randomInitOf(
  job: TrainJob,
  built: { model: tf.LayersModel },
): ((index: number) => tf.LayersModel) | undefined {
  if (job.paradigm === 'finetune') return undefined;
  const [, h, w] = job.train.shape;
  const classes = job.train.classNames.length;
  const inputShape = built.model.inputs[0].shape;
  if (inputShape[1] !== h || inputShape[2] !== w) return undefined;
  return (index) => buildModel(job.model, [h, w, 3], classes, RANDOM_INIT_SEED + 1000 * index).model;
}

/** Run one job under its paradigm; lottery runs 1 + rounds monitored runs. */
export async function runTrainJob(job: TrainJob): Promise<TrainJobResult> {
  if (job.paradigm === 'adversarial') {
    if (!job.attack) throw invalidArgument('adversarial training needs an attack (method, epsilon)');
    checkAttack(job.attack);
  }
  const resumed = job.resumeFrom ? await loadCheckpoint(job.resumeFrom) : undefined;
  if (resumed && resumed.state.paradigm !== job.paradigm) {
    throw invalidArgument(
      `checkpoint ${job.resumeFrom} is a ${resumed.state.paradigm} run, not ${job.paradigm}`,
      { checkpoint: job.resumeFrom },
    );
  }
  const built = await modelFor(job, resumed);
  const layers = selectLayers(built.model, job.layers);
  const tags: Record<string, string> = {
    dataset: job.train.source,
    classes: String(job.train.classNames.length),
    batchSize: String(job.batchSize),
    learningRate: String(job.learningRate),
    seed: String(job.seed),
    backend: tf.getBackend(),
    ...(job.attack && job.paradigm === 'adversarial'
      ? {
          attack: job.attack.method,
          epsilon: String(job.attack.epsilon),
          attackSteps: String(checkAttack(job.attack).steps),
        }
      : {}),
    ...(job.finetune && job.paradigm === 'finetune'
      ? { finetunedFrom: job.finetune.from, frozen: (job.finetune.freeze ?? []).join(',') }
      : {}),
    ...job.tags,
  };
  const makeOptimizer = async (saved?: NamedTensor[]) => {
    const opt = tf.train.adam(job.learningRate);
    if (saved?.length) await opt.setWeights(saved);
    return opt;
  };
  let diversity: DiversityRegOptions | undefined;
  if (job.diversityReg !== undefined && job.diversityReg > 0) {
    if (!job.probe?.probeScores)
      throw invalidArgument(
        'the diversity regulariser needs probe images with their concept scores',
        {},
        'pass a probe bundle (the default synthetic one has them)',
      );
    diversity = {
      weight: job.diversityReg,
      images: job.probe.images,
      imageShape: job.probe.imageShape,
      scores: job.probe.probeScores,
      layers: diversityLayers(layers.map((l) => l.name)),
      batch: job.diversityBatch,
      seed: job.seed,
    };
    tags.diversityReg = String(job.diversityReg);
  }
  const common = {
    diversity,
    paradigm: job.paradigm,
    model: built.model,
    modelName: built.name,
    blocks: built.blocks,
    layers,
    train: job.train,
    test: job.test,
    steps: job.steps,
    batchSize: job.batchSize,
    learningRate: job.learningRate,
    seed: job.seed,
    monitor: job.monitor,
    probe: job.probe,
    monitorEvery: job.monitorEvery,
    maxInFlight: job.maxInFlight,
    checkpointDir: job.checkpointDir,
    checkpointEvery: job.checkpointEvery,
    observer: job.observer,
    signal: job.signal,
    requireMonitor: job.requireMonitor,
    // training resumed from a disk checkpoint continues its monitored run under the same id
    resumeRun: Boolean(job.resumeFrom),
    randomInit: randomInitOf(job, built),
  };

  if (job.paradigm !== 'lottery') {
    const run = await trainRun({
      ...common,
      runId: job.runId,
      startStep: resumed?.state.step,
      optimizer: await makeOptimizer(resumed?.optimizerWeights),
      attack: job.paradigm === 'adversarial' ? job.attack : undefined,
      tags,
      stateMeta: { model: job.model, attack: job.attack, finetune: job.finetune },
    });
    return { runs: [run], model: built.model, modelName: built.name };
  }

  // Lottery ticket: round 0 dense, then prune-rewind-retrain rounds; each round is its own run.
  const lt = job.lottery ?? { rounds: 3, rate: 0.5, rewindStep: 0 };
  if (!Number.isInteger(lt.rounds) || lt.rounds < 1 || lt.rounds > 20)
    throw invalidArgument(`lottery rounds must be 1..20, got ${lt.rounds}`);
  if (!Number.isInteger(lt.rewindStep) || lt.rewindStep < 0 || lt.rewindStep >= job.steps)
    throw invalidArgument(`rewind step must be in 0..${job.steps - 1}, got ${lt.rewindStep}`);
  const model = built.model;
  let masks = fullMasks(model);
  let rewind: tf.Tensor[] | undefined = lt.rewindStep === 0 ? snapshotWeights(model) : undefined;
  let firstRound = 0;
  let resumeStep: number | undefined;
  let resumeOptimizer: NamedTensor[] | undefined;
  if (resumed) {
    firstRound = Number(resumed.state.meta.round ?? 0);
    resumeStep = resumed.state.step;
    resumeOptimizer = resumed.optimizerWeights;
    const extra = new Map((resumed.extra ?? []).map((t) => [t.name, t.tensor]));
    masks = new Map([...masks.keys()].map((k) => [k, extra.get(`mask/${k}`) ?? masks.get(k)!]));
    const saved = [...extra.keys()]
      .filter((k) => k.startsWith('rewind/'))
      .sort((a, b) => Number(a.slice(7)) - Number(b.slice(7)));
    if (saved.length) rewind = saved.map((k) => extra.get(k)!);
  }
  const runs: TrainRunResult[] = [];
  for (let round = firstRound; round <= lt.rounds; round++) {
    if (round > 0 && resumeStep === undefined) {
      masks = pruneMasks(model, masks, lt.rate);
      restoreWeights(model, rewind!);
    }
    // The step-0 checkpoint of a round is the rewound network under its mask (the paper's
    // "interpretable at initialisation" question), so the mask applies before anything is probed.
    applyMasks(model, masks);
    const s = sparsity(masks);
    const roundMasks = masks;
    const run = await trainRun({
      ...common,
      runId: `${job.runId}-r${round}`,
      startStep: resumeStep,
      optimizer: await makeOptimizer(resumeOptimizer),
      masks: roundMasks,
      extraMetrics: { round, sparsity: s },
      tags: {
        ...tags,
        lotteryRun: job.runId,
        round: String(round),
        sparsity: s.toFixed(4),
        pruneRate: String(lt.rate),
        rewindStep: String(lt.rewindStep),
      },
      afterStep: (step) => {
        if (round === 0 && step === lt.rewindStep && !rewind) rewind = snapshotWeights(model);
      },
      extraTensors: () => [
        ...[...roundMasks].map(([name, tensor]) => ({ name: `mask/${name}`, tensor })),
        ...(rewind ?? []).map((tensor, i) => ({ name: `rewind/${i}`, tensor })),
      ],
      stateMeta: { model: job.model, lottery: lt, round },
    });
    resumeStep = undefined;
    resumeOptimizer = undefined;
    runs.push(run);
    if (run.status === 'failed') break;
  }
  return { runs, model, modelName: built.name };
}
