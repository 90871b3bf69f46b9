/**
 * The reference trainer service: `npx tsx apps/trainer/src/main.ts [flags]`.
 * Trains a model under one of the four paradigms (flags: see --help, the same as `cm train`) and
 * streams every checkpoint to the concept service at CM_GRPC_TARGET through @cm/monitor-client.
 * When the service is down, --policy decides: spool (default: training goes on, checkpoints wait
 * in a bounded folder, <CM_HOME>/spool/<run id>, and are sent in order when the service is back;
 * a full spool drops), drop (checkpoints are dropped after --max-block-ms) or wait (training
 * blocks, up to --max-block-ms, then the run fails).
 * The probe bundle must be readable by the concept service too: by default the synthetic bundle
 * is written into CM_BUNDLE_DIR, which both processes share on one machine.
 * SIGINT/SIGTERM: the current step finishes, a resumable checkpoint is saved, the run ends as failed.
 */
import { join } from 'node:path';
import { Command } from 'commander';
import { createLogger, errorMessage, isCmError, setLogFormat, setLogLevel } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import { createMonitorClient, type MonitorClient } from '@cm/monitor-client';
import {
  addDeliveryOptions,
  addTrainOptions,
  ensureSyntheticBundle,
  formatRunSummary,
  loadTrainTest,
  openProbeBundle,
  parseDeliveryPolicy,
  parseTrainFlags,
  runTrainJob,
  selectBackend,
  TerminalView,
  trainJobFromFlags,
  type BackendPreference,
  type DeliveryFlags,
  type TrainFlags,
  type TrainJobResult,
} from '@cm/train';

const log = createLogger('trainer');

export interface TrainerFlags extends TrainFlags, DeliveryFlags {
  target?: string;
}

export function buildTrainerProgram(
  run: (flags: TrainerFlags) => Promise<void>,
  config: Pick<CmConfig, 'trainer'> = loadConfig(),
): Command {
  const program = new Command('trainer').description(
    'Concept-Monitor reference trainer: tfjs training streamed to the concept service',
  );
  addDeliveryOptions(
    // the service's default regulariser weight is configuration (CM_TRAINER_DIVERSITY_REG)
    addTrainOptions(program, { diversityReg: config.trainer.diversityReg }).option(
      '--target <host:port>',
      'concept service address (default CM_GRPC_TARGET)',
    ),
  ).action(run);
  return program;
}

export async function runTrainer(
  flags: TrainerFlags,
  config: CmConfig = loadConfig(),
  signal?: AbortSignal,
): Promise<{ result: TrainJobResult; client: MonitorClient }> {
  const policy = parseDeliveryPolicy(flags.policy);
  const parsed = parseTrainFlags(flags);
  const backend = await selectBackend({ preference: flags.backend as BackendPreference, log });
  const { train, test } = await loadTrainTest(parsed.data, flags.testFraction, flags.seed);
  const root = resolvePath(config.bundles.dir);
  const probe = flags.probe
    ? openProbeBundle(flags.probe, root)
    : await ensureSyntheticBundle(root, {
        images: flags.probeImages,
        seed: 7,
        size: flags.size === 64 ? 64 : 32,
      });
  const target = flags.target ?? config.grpc.target;
  const client = createMonitorClient({
    target,
    policy,
    maxBlockMs: flags.maxBlockMs,
    spoolDir: flags.spoolDir ?? join(resolvePath(config.home), 'spool'),
    spoolMaxBytes: flags.spoolMaxBytes ?? config.grpc.spoolMaxBytes,
    log: log.child('monitor'),
  });
  log.info(`streaming to the concept service at ${target}`, {
    policy: flags.policy,
    bundle: probe.id,
    backend: backend.name,
  });
  const view = new TerminalView();
  try {
    const job = trainJobFromFlags(flags, {
      train,
      test,
      probe,
      monitor: client,
      home: resolvePath(config.home),
      tags: { mode: 'stack', trainer: 'apps/trainer' },
      observer: view,
      signal,
    });
    const result = await runTrainJob(job);
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
    log.info('monitor client', {
      acknowledged: stats.acknowledgedCheckpoints,
      dropped: stats.droppedCheckpoints,
      spooled: stats.spooledCheckpoints,
      resent: stats.resentCheckpoints,
      reconnects: stats.reconnects,
    });
    if (result.runs.some((r) => r.status === 'failed')) process.exitCode = 1;
  }, config);
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
