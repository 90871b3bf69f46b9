/**
 * The reference trainer service: `npx tsx apps/trainer/src/main.ts [flags]`.
 * Trains a model under one of the four paradigms (flags: see --help, the same as `cm train`) and
 * streams every checkpoint to the concept service at CM_GRPC_TARGET through @cm/monitor-client.
 * When the service is down, --policy decides: drop (default: training goes on, checkpoints are
 * dropped after --max-block-ms) or wait (training blocks, up to --max-block-ms, then the run fails).
 * The probe bundle must be readable by the concept service too: by default the synthetic bundle
 * is written into CM_BUNDLE_DIR, which both processes share on one machine.
 * SIGINT/SIGTERM: the current step finishes, a resumable checkpoint is saved, the run ends as failed.
 */
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { CmError, createLogger, errorMessage, isCmError, setLogFormat, setLogLevel } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import { createMonitorClient, type DeliveryPolicy, type MonitorClient } from '@cm/monitor-client';
import {
  addTrainOptions,
  defaultRunId,
  ensureSyntheticBundle,
  formatRunSummary,
  loadTrainTest,
  openProbeBundle,
  parseTrainFlags,
  probeImagesOf,
  runTrainJob,
  selectBackend,
  TerminalView,
  type BackendPreference,
  type TrainFlags,
  type TrainJobResult,
} from '@cm/train';

const log = createLogger('trainer');

export interface TrainerFlags extends TrainFlags {
  target?: string;
  policy: string;
  maxBlockMs?: number;
}

export function buildTrainerProgram(run: (flags: TrainerFlags) => Promise<void>): Command {
  const program = new Command('trainer').description('Concept-Monitor reference trainer: tfjs training streamed to the concept service');
  addTrainOptions(program)
    .option('--target <host:port>', 'concept service address (default CM_GRPC_TARGET)')
    .option('--policy <policy>', 'service down: drop checkpoints and go on, or wait', 'drop')
    .option('--max-block-ms <ms>', 'longest a checkpoint waits for the service (default: drop 5000, wait forever)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CmError('INVALID_ARGUMENT', `--max-block-ms must be a non-negative integer, got '${v}'`);
      return n;
    })
    .action(run);
  return program;
}

export async function runTrainer(flags: TrainerFlags, config: CmConfig = loadConfig(), signal?: AbortSignal): Promise<{ result: TrainJobResult; client: MonitorClient }> {
  if (flags.policy !== 'wait' && flags.policy !== 'drop') throw new CmError('INVALID_ARGUMENT', `--policy must be wait or drop, got '${flags.policy}'`);
  const parsed = parseTrainFlags(flags);
  const backend = await selectBackend({ preference: flags.backend as BackendPreference, log });
  const { train, test } = await loadTrainTest(parsed.data, flags.testFraction, flags.seed);
  const root = resolvePath(config.bundles.dir);
  const probe = flags.probe ? openProbeBundle(flags.probe, root) : await ensureSyntheticBundle(root, { images: flags.probeImages, seed: 7, size: flags.size === 64 ? 64 : 32 });
  const target = flags.target ?? config.grpc.target;
  const client = createMonitorClient({ target, policy: flags.policy as DeliveryPolicy, maxBlockMs: flags.maxBlockMs, log: log.child('monitor') });
  log.info(`streaming to the concept service at ${target}`, { policy: flags.policy, bundle: probe.id, backend: backend.name });
  const view = new TerminalView();
  try {
    const result = await runTrainJob({
      paradigm: parsed.paradigm,
      runId: flags.runId ?? defaultRunId(parsed.paradigm),
      train,
      test,
      model: parsed.model,
      steps: flags.steps,
      batchSize: flags.batch,
      learningRate: flags.lr,
      seed: flags.seed,
      monitorEvery: flags.every,
      layers: parsed.layers,
      monitor: client,
      probe: probeImagesOf(probe),
      tags: { task: parsed.data.kind === 'world' ? (parsed.data.task ?? 'shape') : parsed.data.kind, mode: 'stack', trainer: 'apps/trainer' },
      checkpointDir: resolve(flags.checkpointDir ?? join(resolvePath(config.home), 'checkpoints')),
      checkpointEvery: flags.checkpointEvery,
      attack: parsed.attack,
      finetune: parsed.finetune,
      lottery: parsed.lottery,
      resumeFrom: flags.resume ? resolve(flags.resume) : undefined,
      observer: view,
      signal,
    });
    return { result, client };
  } finally {
    view.stop();
  }
}

async function main(): Promise<void> {
  const config = loadConfig();
  setLogLevel(config.log.level);
  setLogFormat(config.log.format);
  const controller = new AbortController();
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => controller.abort());
  const program = buildTrainerProgram(async (flags) => {
    const { result, client } = await runTrainer(flags, config, controller.signal);
    const stats = client.stats();
    await client.close();
    for (const run of result.runs) process.stdout.write(formatRunSummary(run) + '\n');
    log.info('monitor client', { acknowledged: stats.acknowledgedCheckpoints, dropped: stats.droppedCheckpoints, resent: stats.resentCheckpoints, reconnects: stats.reconnects });
    if (result.runs.some((r) => r.status === 'failed')) process.exitCode = 1;
  });
  program.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith('commander.')) return;
    process.stderr.write(`trainer: error: ${isCmError(e) ? e.toOneLine() : errorMessage(e)}\n`);
    process.exitCode = 1;
  }
}

if (require.main === module) void main();
