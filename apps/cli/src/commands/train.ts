import { join } from 'node:path';
import type { Command } from 'commander';
import type { Monitor } from '@cm/contracts';
import { CmError, createLogger, errorMessage, invalidArgument } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import { localMonitorFromConfig } from '@cm/engine';
import { createMonitorClient } from '@cm/monitor-client';
import type { ProbeBundle } from '@cm/probe';
import {
  describePolicy,
  describeThinning,
  openStore,
  retentionEnabled,
  scheduleLabelThinning,
  startReaderEndpoint,
  type Store,
} from '@cm/store';
import {
  addDeliveryOptions,
  addTrainOptions,
  ensureSyntheticBundle,
  formatLearnedSummary,
  formatRunSummary,
  loadTrainTest,
  openProbeBundle,
  parseDeliveryPolicy,
  parseTrainFlags,
  runTrainJob,
  trainJobFromFlags,
  type DeliveryFlags,
  selectBackend,
  TerminalView,
  type BackendPreference,
  type TrainFlags,
  type TrainJob,
  type TrainJobResult,
} from '@cm/train';

const log = createLogger('train');

export interface MonitorFlags extends DeliveryFlags {
  stack?: boolean;
  monitor?: boolean;
  /** Monitoring that cannot start is a warning instead of an error. */
  allowUnmonitored?: boolean;
}

/** How the trainer reaches Concept-Monitor: all-in-one (engine + embedded chDB), the stack, or not at all. */
export interface MonitorHandle {
  mode: 'all-in-one' | 'stack' | 'none';
  monitor?: Monitor;
  /** The embedded store (all-in-one), for reading results back. */
  store?: Store;
  close(): Promise<void>;
}

/**
 * `writer` names the command in the reader endpoint's advertisement, so `cm sql` in another shell
 * says "store: chdb .cm/store (served by cm demo, pid 1234)".
 */
export async function openMonitor(
  config: CmConfig,
  flags: MonitorFlags,
  writer = 'cm train',
): Promise<MonitorHandle> {
  if (flags.monitor === false) return { mode: 'none', close: async () => undefined };
  if (flags.stack) {
    const policy = parseDeliveryPolicy(flags.policy);
    const client = createMonitorClient({
      target: config.grpc.target,
      policy,
      maxBlockMs: flags.maxBlockMs,
      spoolDir: flags.spoolDir ?? join(resolvePath(config.home), 'spool'),
      spoolMaxBytes: flags.spoolMaxBytes ?? config.grpc.spoolMaxBytes,
    });
    log.info(`monitoring through the concept service at ${config.grpc.target} (policy ${flags.policy})`);
    return { mode: 'stack', monitor: client, close: () => client.close() };
  }
  const store = await openStore({
    kind: 'chdb',
    path: resolvePath(config.chdbPath),
    database: config.clickhouse.database,
  });
  await store.migrate();
  // chDB lets one process open the folder: this one serves reads of it while it writes
  // (`cm sql`, `cm runs`, `cm ui` in another shell go through it; libs/store reader-endpoint).
  const reader = await startReaderEndpoint(store, { writer }).catch(async (e: unknown) => {
    await store.close();
    throw e;
  });
  // One dissection worker: the other core keeps training.
  // CM_DISSECT_METHOD, CM_ALERT_* and the webhook act here as they do in the concept service.
  const monitor = localMonitorFromConfig(config, { store, workers: 1 });
  log.info(`monitoring all-in-one: embedded store ${resolvePath(config.chdbPath)}`);
  // Label retention (CM_LABELS_*; off by default) as in the recorder and `cm serve`: this process
  // writes the store, so it thins it, every CM_RETENTION_INTERVAL_MINUTES and once more at the end
  // (after the last labels are in), so a run shorter than the interval ends as a long-lived writer
  // would leave it. A failed pass is a warning: the training and its records are done.
  const thinning = scheduleLabelThinning(store, config.retention, {
    intervalMs: config.retention.intervalMinutes * 60_000,
    log: log.child('retention'),
  });
  if (retentionEnabled(config.retention))
    log.info(`label retention: ${describePolicy(config.retention)}`, { ...config.retention });
  return {
    mode: 'all-in-one',
    monitor,
    store,
    close: async () => {
      try {
        await monitor.close();
        if (retentionEnabled(config.retention)) {
          const { records } = await thinning.runNow().catch((e: unknown) => {
            log.warn('label thinning at the end failed; the next writer of this store retries', {
              error: errorMessage(e),
            });
            return { records: [] };
          });
          for (const r of records)
            log.info(`run ${r.runId}: ${describeThinning([r])} (${r.rowsRemoved} label rows removed)`);
        }
      } finally {
        await thinning.stop();
        await reader.close();
        await store.close();
      }
    },
  };
}

/** The probe bundle a run uses: --probe, else the synthetic world bundle (made on first use). */
export async function resolveProbe(
  config: CmConfig,
  flags: Pick<TrainFlags, 'probe' | 'probeImages' | 'size'>,
): Promise<ProbeBundle> {
  const root = resolvePath(config.bundles.dir);
  if (flags.probe) return openProbeBundle(flags.probe, root);
  if (flags.size !== 32 && flags.size !== 64) {
    throw invalidArgument(
      `the synthetic probe bundle is 32 or 64 px; pass --probe <bundle> for ${flags.size} px images`,
    );
  }
  return ensureSyntheticBundle(root, { images: flags.probeImages, seed: 7, size: flags.size });
}

export interface TrainCommandResult {
  job: TrainJob;
  result: TrainJobResult;
  probe: ProbeBundle;
  classNames: string[];
}

/** Everything `cm train` does, reusable by `cm demo`. The monitor handle stays open for the caller. */
export async function runTrainCommand(
  flags: TrainFlags & Pick<MonitorFlags, 'allowUnmonitored'>,
  handle: MonitorHandle,
  config: CmConfig,
  overrides: Partial<TrainJob> = {},
): Promise<TrainCommandResult> {
  const parsed = parseTrainFlags(flags);
  await selectBackend({ preference: flags.backend as BackendPreference });
  const { train, test } = await loadTrainTest(parsed.data, flags.testFraction, flags.seed);
  const probe = await resolveProbe(config, flags);
  const [, ph, pw] = probe.imageShape;
  if (ph !== train.shape[1] || pw !== train.shape[2]) {
    throw invalidArgument(
      `probe bundle images are ${ph}x${pw} but training images are ${train.shape[1]}x${train.shape[2]}`,
      {},
      'use --size to match, or a bundle of the right size',
    );
  }
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  const view = new TerminalView();
  const job: TrainJob = {
    ...trainJobFromFlags(flags, {
      train,
      test,
      probe,
      monitor: handle.monitor,
      home: resolvePath(config.home),
      tags: { mode: handle.mode },
      observer: view,
      signal: controller.signal,
    }),
    // A run the monitor refuses (service down, unknown bundle) stops the command before training
    // unless --allow-unmonitored: an exit 0 after an unmonitored run reads as success.
    requireMonitor: handle.mode !== 'none' && !flags.allowUnmonitored,
    ...overrides,
  };
  try {
    const result = await runTrainJob(job);
    return { job, result, probe, classNames: train.classNames };
  } finally {
    view.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

export function addMonitorOptions(cmd: Command): Command {
  return addDeliveryOptions(
    cmd
      .option('--stack', 'stream to the concept service at CM_GRPC_TARGET instead of the all-in-one engine')
      .option('--no-monitor', 'train without monitoring')
      .option(
        '--allow-unmonitored',
        'when monitoring cannot start (service down, unknown bundle), warn and train anyway instead of failing',
      ),
    'stack: ',
  );
}

export function registerTrain(program: Command): void {
  const cmd = program
    .command('train')
    .description(
      'train a model (synthetic world, CIFAR-10 or an image folder) under a paradigm, monitored live',
    );
  addMonitorOptions(addTrainOptions(cmd)).action(async (flags: TrainFlags & MonitorFlags) => {
    const config = loadConfig();
    const handle = await openMonitor(config, flags);
    try {
      const { result } = await runTrainCommand(flags, handle, config);
      for (const run of result.runs) {
        process.stdout.write(formatRunSummary(run) + '\n');
        for (const line of formatLearnedSummary(run)) process.stdout.write(line + '\n');
      }
      const last = result.runs[result.runs.length - 1];
      if (last?.savedTo)
        process.stdout.write(
          `checkpoint: ${last.savedTo} (resume with --resume, fine-tune with --paradigm finetune --from)\n`,
        );
      if (result.runs.some((r) => r.status === 'failed'))
        throw new CmError('INTERNAL', 'training stopped before the last step', {
          hint: 'resume with --resume <checkpoint>',
        });
    } finally {
      await handle.close();
    }
  });
}
