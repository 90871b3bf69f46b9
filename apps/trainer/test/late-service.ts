/**
 * What the spool end-to-end tests share: a monitor client under policy spool for a concept
 * service that is not up yet, a Monitor that forwards to it, and the short training run they watch.
 */
import type { Monitor } from '@cm/contracts';
import { createLogger, waitFor } from '@cm/core';
import { createConceptServer, type ConceptServer } from '@cm/concept-server';
import type { ConceptEngine, MemorySink } from '@cm/engine';
import { createMonitorClient, type MonitorClient } from '@cm/monitor-client';
import { runTrainJob, worldDataset, type ProbeImages, type TrainJobResult } from '@cm/train';

/** Policy spool to 127.0.0.1:`port`: blocks at most 300 ms, then to `spoolDir`; reconnects every 20-100 ms. */
export function spoolingClient(port: number, spoolDir: string): MonitorClient {
  return createMonitorClient({
    target: `127.0.0.1:${port}`,
    policy: 'spool',
    maxBlockMs: 300,
    spoolDir,
    reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
  });
}

/** The run calls of `client` a test's own Monitor passes through unchanged. */
export const forwardRunCalls = (
  client: MonitorClient,
): Pick<Monitor, 'startRun' | 'endRun' | 'close' | 'undeliveredSteps'> => ({
  startRun: (spec, o) => client.startRun(spec, o),
  endRun: (s) => client.endRun(s),
  close: () => client.close(),
  undeliveredSteps: () => client.undeliveredSteps(),
});

/** A 4-step small-cnn run on 32 shapes, monitored every step (5 checkpoints: 0-4). */
export function trainFourSteps(runId: string, monitor: Monitor, probe: ProbeImages): Promise<TrainJobResult> {
  return runTrainJob({
    paradigm: 'standard',
    runId,
    train: worldDataset({ task: 'shape', count: 32, seed: 1 }),
    model: { arch: 'small-cnn', widths: [4, 8] },
    steps: 4,
    batchSize: 8,
    learningRate: 0.01,
    seed: 1,
    monitorEvery: 1,
    monitor,
    probe,
  });
}

/**
 * The concept service comes up during the run: listen on `port`, then wait until `client` has found
 * it, before training goes on. Without the wait, on a loaded machine the run could end within
 * maxBlockMs of the service coming up, and the end of the run would rightly count the spool as
 * dropped (the service still unreachable for the client).
 */
export async function bringUpService(
  client: MonitorClient,
  port: number,
  engine: ConceptEngine,
  sink: MemorySink,
): Promise<ConceptServer> {
  const server = createConceptServer({ log: createLogger('test-service'), engine, sink });
  await server.listen(`127.0.0.1:${port}`);
  if (!(await waitFor(async () => client.stats().connected, 30_000, 20)))
    throw new Error(`the client did not reconnect to the service on port ${port} within 30 s`);
  return server;
}
