/**
 * The real gRPC server and client over loopback: streaming, acks after the sink, backpressure,
 * resend after a sink failure and after a service restart.
 */
import { createMonitorClient } from '@cm/monitor-client';
import {
  makeTestBundles,
  rawConvActivations,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  argmaxDissector,
  type TestBundles,
} from '@cm/engine/src/testing';
import { startTestService, labelRowsOf, FlakySink } from './helpers';

let bundles: TestBundles;
beforeAll(async () => {
  bundles = await makeTestBundles();
});
afterAll(() => bundles.cleanup());

const fast = { reconnect: { initialDelayMs: 20, maxDelayMs: 200 } };

it('streams 3 checkpoints of 3 layers; every neuron is published once, acks carry the summary', async () => {
  const svc = await startTestService({ bundles });
  const client = createMonitorClient({ target: svc.target, ...fast });
  try {
    await client.startRun(testRunSpec('grpc-basic', bundles.bundleId));
    for (let step = 0; step < 3; step++) {
      const cp = testCheckpoint(bundles.space, step);
      cp.layers[0] = rawConvActivations(bundles.space, 'conv1', 8, step); // one raw NHWC layer, pooled by the service
      const result = await client.sendCheckpoint(cp);
      expect(result?.step).toBe(step);
      expect(result?.layers.map((l) => l.layer)).toEqual(TEST_LAYERS.map((l) => l.name));
    }
    await client.endRun('completed');
    const rows = labelRowsOf(svc.sink.records);
    expect(rows.length).toBe(3 * (8 + 12 + 6));
    expect(new Set(rows).size).toBe(rows.length);
    const kinds = svc.sink.records.map((r) => r.kind);
    expect(kinds[0]).toBe('run');
    expect(kinds.filter((k) => k === 'checkpoint').length).toBe(3);
    expect(kinds.filter((k) => k === 'snapshot').length).toBe(9);
    const last = svc.sink.records[svc.sink.records.length - 1];
    expect(last.kind === 'run' && last.status).toBe('completed');
    expect(client.stats()).toMatchObject({
      acknowledgedCheckpoints: 3,
      droppedCheckpoints: 0,
      pendingCheckpoints: 0,
      bufferedBytes: 0,
    });
  } finally {
    await client.close();
    await svc.stop();
  }
});

it('float16 on the wire gives the same labels as float32', async () => {
  const svc = await startTestService({ bundles });
  const c32 = createMonitorClient({ target: svc.target, ...fast });
  const c16 = createMonitorClient({ target: svc.target, dtype: 'float16', ...fast });
  try {
    await c32.startRun(testRunSpec('f32', bundles.bundleId));
    await c16.startRun(testRunSpec('f16', bundles.bundleId));
    await Promise.all([
      c32.sendCheckpoint(testCheckpoint(bundles.space, 0)),
      c16.sendCheckpoint(testCheckpoint(bundles.space, 0)),
    ]);
    const labels = (run: string): string[] =>
      svc.sink.records.flatMap((r) =>
        r.kind === 'labels' && r.runId === run
          ? r.labels.map((l) => `${r.layer}:${l.neuron}:${l.concept}`)
          : [],
      );
    expect(labels('f16').length).toBe(26);
    expect(labels('f16')).toEqual(labels('f32'));
  } finally {
    await c32.close();
    await c16.close();
    await svc.stop();
  }
});

it('a checkpoint is acked only after the sink has it; a sink failure is retried by resending', async () => {
  const sink = new FlakySink();
  const svc = await startTestService({ bundles, sink });
  const client = createMonitorClient({ target: svc.target, ...fast });
  try {
    await client.startRun(testRunSpec('flaky', bundles.bundleId));
    sink.failNext = 1; // the first publish of checkpoint 0 fails (NATS PubAck timeout)
    const r0 = await client.sendCheckpoint(testCheckpoint(bundles.space, 0));
    expect(r0?.step).toBe(0);
    const r1 = await client.sendCheckpoint(testCheckpoint(bundles.space, 1));
    expect(r1?.step).toBe(1);
    expect(client.stats().resentCheckpoints).toBeGreaterThanOrEqual(1);
    expect(client.stats().reconnects).toBeGreaterThanOrEqual(1);
    const rows = labelRowsOf(sink.records);
    expect(rows.length).toBe(2 * 26);
    expect(new Set(rows).size).toBe(rows.length);
  } finally {
    await client.close();
    await svc.stop();
  }
});

it('resends unacknowledged checkpoints to a restarted service; nothing lost', async () => {
  const sink = new FlakySink();
  const first = await startTestService({ bundles, sink, dissector: argmaxDissector(150) });
  const client = createMonitorClient({ target: first.target, ...fast });
  let second: Awaited<ReturnType<typeof startTestService>> | undefined;
  try {
    await client.startRun(testRunSpec('restart', bundles.bundleId));
    expect(await client.sendCheckpoint(testCheckpoint(bundles.space, 0))).toBeDefined();
    // 1 and 2 in flight when the service goes away without draining
    const p1 = client.sendCheckpoint(testCheckpoint(bundles.space, 1));
    const p2 = client.sendCheckpoint(testCheckpoint(bundles.space, 2));
    await new Promise((r) => setTimeout(r, 60));
    await first.server.stop(0);
    // a fresh process: new engine (no run state), same address
    second = await startTestService({ bundles, sink, listenAddress: first.target });
    const [r1, r2] = await Promise.all([p1, p2]);
    expect([r1?.step, r2?.step]).toEqual([1, 2]);
    await client.endRun('completed');
    // a checkpoint published by the old service may be published again by the new one (JetStream
    // de-duplicates it by message id): every neuron is there, as a set
    expect(new Set(labelRowsOf(sink.records)).size).toBe(3 * 26);
    expect(client.stats().resentCheckpoints).toBeGreaterThanOrEqual(1);
    expect(client.stats().droppedCheckpoints).toBe(0);
  } finally {
    await client.close();
    await second?.stop();
  }
});
