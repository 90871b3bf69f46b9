import { resolve } from 'node:path';
import type { Command } from 'commander';
import { invalidArgument } from '@cm/core';
import type { AttackSpec } from './adversarial';
import { loadDataset, splitDataset, type DataSpec, type ImageDataset } from './data';
import { SMALL_CNN_HEADS, type ModelSpec, type SmallCnnHead } from './models';
import { parseParadigm, type FinetuneSpec, type LotterySpec, type Paradigm } from './paradigms';

/**
 * The trainer's flags, shared by `cm train`, `cm demo` and the trainer service (apps/trainer), so
 * the three take the same options with the same defaults.
 */
export interface TrainFlags {
  paradigm: string;
  data: string;
  task: string;
  count: number;
  size: number;
  model: string;
  widths: string;
  head: string;
  depth: number;
  width: number;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  every: number;
  layers: string;
  probe?: string;
  probeImages: number;
  runId?: string;
  from?: string;
  freeze?: string;
  attack: string;
  eps: number;
  attackSteps: number;
  epsWarmup: number;
  rounds: number;
  pruneRate: number;
  rewindStep: number;
  resume?: string;
  checkpointDir?: string;
  checkpointEvery: number;
  backend: string;
  testFraction: number;
  /** Weight of the concept-diversity regulariser (0: off). */
  diversityReg: number;
}

export const TRAIN_DEFAULTS = {
  paradigm: 'standard',
  data: 'world',
  task: 'shape',
  count: 6000,
  size: 32,
  model: 'small-cnn',
  widths: '16,32,64',
  head: 'max',
  depth: 20,
  width: 16,
  steps: 1000,
  batch: 32,
  lr: 0.003,
  seed: 1,
  every: 100,
  layers: 'all',
  probeImages: 2000,
  attack: 'pgd',
  eps: 8 / 255,
  attackSteps: 3,
  epsWarmup: 0.3,
  rounds: 2,
  pruneRate: 0.5,
  rewindStep: 0,
  checkpointEvery: 500,
  backend: 'auto',
  testFraction: 0.1,
  // a number, not the literal 0: the trainer service's default comes from CM_TRAINER_DIVERSITY_REG
  diversityReg: 0 as number,
} as const;

function num(name: string, integer: boolean, min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
      throw invalidArgument(
        `--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got '${v}'`,
      );
    }
    return n;
  };
}

/** Register the trainer's options on a commander command. */
export function addTrainOptions(cmd: Command, defaults: Partial<typeof TRAIN_DEFAULTS> = {}): Command {
  const d = { ...TRAIN_DEFAULTS, ...defaults };
  return cmd
    .option('--paradigm <name>', 'standard | finetune | adversarial | lottery', d.paradigm)
    .option(
      '--data <source>',
      'world | cifar10:<folder of data_batch_*.bin> | folder:<folder of class subfolders>',
      d.data,
    )
    .option(
      '--task <task>',
      "world task: a factor (shape, colour, texture, ...) or a composition ('shape+colour')",
      d.task,
    )
    .option(
      '--count <n>',
      'world: images to generate (train + test)',
      num('count', true, 10, 1_000_000),
      d.count,
    )
    .option(
      '--size <px>',
      'image side (world: 32 or 64; folder: resize to)',
      num('size', true, 8, 512),
      d.size,
    )
    .option('--model <arch>', 'small-cnn | resnet', d.model)
    .option('--widths <list>', 'small-cnn conv widths', d.widths)
    .option('--head <pool>', 'small-cnn pooling before the logits: max | avg', d.head)
    .option('--depth <n>', 'resnet depth (6n+2)', num('depth', true, 8, 200), d.depth)
    .option('--width <n>', 'resnet base width', num('width', true, 1, 512), d.width)
    .option(
      '--steps <n>',
      'optimizer steps (per round for lottery)',
      num('steps', true, 1, 10_000_000),
      d.steps,
    )
    .option('--batch <n>', 'batch size', num('batch', true, 1, 4096), d.batch)
    .option('--lr <rate>', 'Adam learning rate', num('lr', false, 1e-7, 10), d.lr)
    .option('--seed <n>', 'random seed', num('seed', true, 0, 0xffffffff), d.seed)
    .option(
      '--every <n>',
      'monitor every n steps (and at step 0)',
      num('every', true, 1, 10_000_000),
      d.every,
    )
    .option(
      '--layers <list>',
      'monitored layers: names or kinds (all, blocks, conv, dense, logits)',
      d.layers,
    )
    .option(
      '--probe <bundle>',
      'probe bundle folder or id (default: the synthetic world bundle, made if missing)',
    )
    .option(
      '--probe-images <n>',
      'images of the default synthetic probe bundle',
      num('probe-images', true, 50, 100_000),
      d.probeImages,
    )
    .option('--run-id <id>', 'run id (default: <paradigm>-<time>)')
    .option('--from <checkpoint>', 'finetune: checkpoint folder of the source model')
    .option('--freeze <layers>', "finetune: layers kept frozen (names; 'body' for all but the head)")
    .option('--attack <method>', 'adversarial: pgd | fgsm', d.attack)
    .option(
      '--eps <eps>',
      'adversarial: L-inf budget in [0, 1] pixel units',
      num('eps', false, 1e-6, 1),
      d.eps,
    )
    .option('--attack-steps <k>', 'adversarial: PGD steps', num('attack-steps', true, 1, 100), d.attackSteps)
    .option(
      '--eps-warmup <fraction>',
      'adversarial: share of the steps over which the budget ramps up from 0 (0: full budget from the start)',
      num('eps-warmup', false, 0, 1),
      d.epsWarmup,
    )
    .option(
      '--rounds <n>',
      'lottery: pruning rounds after the dense round',
      num('rounds', true, 1, 20),
      d.rounds,
    )
    .option(
      '--prune-rate <p>',
      'lottery: fraction of remaining weights pruned per round',
      num('prune-rate', false, 0.01, 0.99),
      d.pruneRate,
    )
    .option(
      '--rewind-step <n>',
      'lottery: step the surviving weights are rewound to',
      num('rewind-step', true, 0, 10_000_000),
      d.rewindStep,
    )
    .option('--resume <checkpoint>', 'resume a run from its checkpoint folder')
    .option('--checkpoint-dir <dir>', 'where checkpoints are saved (default <CM_HOME>/checkpoints)')
    .option(
      '--checkpoint-every <n>',
      'save a resumable checkpoint every n steps',
      num('checkpoint-every', true, 1, 10_000_000),
      d.checkpointEvery,
    )
    .option('--backend <name>', 'auto | tensorflow | wasm | cpu', d.backend)
    .option(
      '--test-fraction <f>',
      'held-out share of the data',
      num('test-fraction', false, 0.01, 0.9),
      d.testFraction,
    )
    .option(
      '--diversity-reg <weight>',
      'weight of the concept-diversity regulariser on the probe images (0: off; docs/findings.md)',
      num('diversity-reg', false, 0, 100),
      d.diversityReg,
    );
}

export function parseDataSpec(
  flags: Pick<TrainFlags, 'data' | 'task' | 'count' | 'size' | 'seed'>,
): DataSpec {
  const [kind, ...rest] = flags.data.split(':');
  const dir = rest.join(':');
  if (kind === 'world') {
    if (flags.size !== 32 && flags.size !== 64)
      throw invalidArgument(`the world renders 32 or 64 px images, got --size ${flags.size}`);
    return { kind: 'world', task: flags.task, count: flags.count, seed: flags.seed, size: flags.size };
  }
  if (kind === 'cifar10' && dir) return { kind: 'cifar10', dir: resolve(dir), split: 'train' };
  if (kind === 'folder' && dir) return { kind: 'folder', dir: resolve(dir), size: flags.size };
  throw invalidArgument(
    `unknown --data '${flags.data}'`,
    { data: flags.data },
    'use world, cifar10:<dir> or folder:<dir>',
  );
}

export function parseModelSpec(
  flags: Pick<TrainFlags, 'model' | 'widths' | 'depth' | 'width'> & { head?: string },
): ModelSpec {
  if (flags.model === 'small-cnn') {
    const widths = flags.widths.split(',').map((w) => Number(w.trim()));
    if (widths.some((w) => !Number.isInteger(w) || w < 1))
      throw invalidArgument(`--widths must be positive integers separated by commas, got '${flags.widths}'`);
    const head = flags.head ?? TRAIN_DEFAULTS.head;
    if (!(SMALL_CNN_HEADS as readonly string[]).includes(head))
      throw invalidArgument(`--head must be max or avg, got '${head}'`);
    return { arch: 'small-cnn', widths, head: head as SmallCnnHead };
  }
  if (flags.model === 'resnet') return { arch: 'resnet', depth: flags.depth, width: flags.width };
  throw invalidArgument(
    `unknown --model '${flags.model}'`,
    { model: flags.model },
    'use small-cnn or resnet',
  );
}

export interface ParsedTrainFlags {
  paradigm: Paradigm;
  data: DataSpec;
  model: ModelSpec;
  layers: string[];
  attack?: AttackSpec;
  finetune?: FinetuneSpec;
  lottery: LotterySpec;
}

export function parseTrainFlags(flags: TrainFlags): ParsedTrainFlags {
  const paradigm = parseParadigm(flags.paradigm);
  if (flags.attack !== 'pgd' && flags.attack !== 'fgsm')
    throw invalidArgument(`--attack must be pgd or fgsm, got '${flags.attack}'`);
  if (paradigm === 'finetune' && !flags.from)
    throw invalidArgument(
      '--paradigm finetune needs --from <checkpoint folder>',
      {},
      'train a model first (cm train), its checkpoint is under .cm/checkpoints/<run>',
    );
  return {
    paradigm,
    data: parseDataSpec(flags),
    model: parseModelSpec(flags),
    layers: flags.layers
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    attack: {
      method: flags.attack,
      epsilon: flags.eps,
      steps: flags.attackSteps,
      seed: flags.seed,
      warmupSteps: Math.round((flags.epsWarmup ?? TRAIN_DEFAULTS.epsWarmup) * flags.steps),
    },
    finetune: flags.from
      ? {
          from: resolve(flags.from),
          freeze: flags.freeze ? flags.freeze.split(',').map((s) => s.trim()) : [],
        }
      : undefined,
    lottery: { rounds: flags.rounds, rate: flags.pruneRate, rewindStep: flags.rewindStep },
  };
}

/** Load the data of a spec and split off the held-out part (CIFAR: its own test batch). */
export async function loadTrainTest(
  spec: DataSpec,
  testFraction: number,
  seed: number,
): Promise<{ train: ImageDataset; test: ImageDataset }> {
  const all = await loadDataset(spec);
  return splitDataset(all, testFraction, seed);
}

export function defaultRunId(paradigm: string, now = new Date()): string {
  return `${paradigm}-${now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-')}`;
}
