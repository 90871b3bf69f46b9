import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { Monitor } from '@cm/contracts';
import { invalidArgument } from '@cm/core';
import type { ProbeBundle } from '@cm/probe';
import type { ImageDataset } from './data';
import { defaultRunId, parseTrainFlags, type TrainFlags } from './options';
import type { TrainJob } from './paradigms';
import { probeImagesOf } from './session';
import type { TrainObserver } from './loop';

/** What a front end (`cm train`, `cm demo`, the trainer service) supplies besides the flags. */
export interface TrainJobContext {
  train: ImageDataset;
  test?: ImageDataset;
  probe: ProbeBundle;
  monitor?: Monitor;
  /** CM_HOME: checkpoints go to <home>/checkpoints unless --checkpoint-dir says otherwise. */
  home: string;
  tags: Record<string, string>;
  observer?: TrainObserver;
  signal?: AbortSignal;
}

/** The training job the flags describe: one place for the flag -> job mapping every front end shares. */
export function trainJobFromFlags(flags: TrainFlags, ctx: TrainJobContext): TrainJob {
  const parsed = parseTrainFlags(flags);
  return {
    paradigm: parsed.paradigm,
    runId: flags.runId ?? defaultRunId(parsed.paradigm),
    train: ctx.train,
    test: ctx.test,
    model: parsed.model,
    steps: flags.steps,
    batchSize: flags.batch,
    learningRate: flags.lr,
    seed: flags.seed,
    monitorEvery: flags.every,
    layers: parsed.layers,
    monitor: ctx.monitor,
    probe: probeImagesOf(ctx.probe),
    tags: {
      task: parsed.data.kind === 'world' ? (parsed.data.task ?? 'shape') : parsed.data.kind,
      ...ctx.tags,
    },
    checkpointDir: resolve(flags.checkpointDir ?? join(ctx.home, 'checkpoints')),
    checkpointEvery: flags.checkpointEvery,
    attack: parsed.attack,
    finetune: parsed.finetune,
    lottery: parsed.lottery,
    diversityReg: flags.diversityReg,
    resumeFrom: flags.resume ? resolve(flags.resume) : undefined,
    observer: ctx.observer,
    signal: ctx.signal,
  };
}

/** Flags of a trainer that streams to the concept service: what to do while it is down. */
export interface DeliveryFlags {
  policy: string;
  maxBlockMs?: number;
  /** Policy spool: the folder under which each run spools (default <CM_HOME>/spool). */
  spoolDir?: string;
  /** Policy spool: bound on a run's spool files, bytes (default CM_SPOOL_MAX_BYTES). */
  spoolMaxBytes?: number;
}

export function addDeliveryOptions(cmd: Command, prefix = ''): Command {
  return cmd
    .option(
      '--policy <policy>',
      `${prefix}when the service is down: spool checkpoints to disk and send them when it is back, wait, or drop them`,
      'spool',
    )
    .option(
      '--max-block-ms <ms>',
      `${prefix}longest a checkpoint waits for the service (default: spool and drop 5000, wait forever)`,
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0)
          throw invalidArgument(`--max-block-ms must be a non-negative integer, got '${v}'`);
        return n;
      },
    )
    .option(
      '--spool-dir <dir>',
      `${prefix}policy spool: folder of the spooled checkpoints (default <CM_HOME>/spool)`,
    )
    .option(
      '--spool-max-bytes <bytes>',
      `${prefix}policy spool: bound on a run's spool, bytes (default CM_SPOOL_MAX_BYTES, 2 GiB)`,
      (v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n <= 0)
          throw invalidArgument(`--spool-max-bytes must be a positive integer, got '${v}'`);
        return n;
      },
    );
}

export function parseDeliveryPolicy(policy: string): 'wait' | 'drop' | 'spool' {
  if (policy !== 'wait' && policy !== 'drop' && policy !== 'spool')
    throw invalidArgument(`--policy must be spool, wait or drop, got '${policy}'`);
  return policy;
}
