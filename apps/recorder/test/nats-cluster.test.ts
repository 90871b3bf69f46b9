import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus, type Bus } from '@cm/bus';
import { STREAM, type CmRecord } from '@cm/contracts';
import { freePort, waitFor } from '@cm/core';
import { startNatsCluster, type NatsCluster } from '@cm/stack';
import { openStore, sqlString, type Store } from '@cm/store';
import { RecorderConsumer } from '@cm/recorder-consumer';
import { labelsRecord, runRecord } from '../../../libs/store/test/fixtures';

/**
 * Scale-out on the real engine: a 3-node nats-server JetStream cluster started by the stack code,
 * the stream at R3, the node that leads the stream SIGKILLed mid-run and restarted; the recorder
 * (reading from the cluster) stores every checkpoint's rows exactly once.
 */
const dir = mkdtempSync(join(tmpdir(), 'cm-nats-cluster-'));
let cluster: NatsCluster;
let publisher: Bus;
let consumerBus: Bus;
let store: Store;
let recorder: RecorderConsumer;

const ports = async (n: number): Promise<number[]> => {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort());
  return out;
};

/** JetStream in a fresh cluster answers once its meta leader is elected: retry until then. */
async function retry<T>(what: string, f: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

beforeAll(async () => {
  cluster = await startNatsCluster({
    dir,
    clientPorts: await ports(3),
    monitorPorts: await ports(3),
    routePorts: await ports(3),
  });
  publisher = await connectBus({ url: cluster.url, name: 'cluster-test-publisher' });
  consumerBus = await connectBus({ url: cluster.url, name: 'cluster-test-recorder' });
  await retry('stream at R3', () => publisher.ensureStream(3));
  store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_cluster' });
  await store.migrate();
  recorder = new RecorderConsumer({
    js: consumerBus.js,
    jsm: consumerBus.jsm,
    store,
    batchMessages: 20,
    ackWaitMs: 3000,
  });
  await retry('recorder consumer', () => recorder.start());
}, 120_000);

afterAll(async () => {
  await recorder?.stop();
  await publisher?.close();
  await consumerBus?.close();
  await store?.close();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('a 3-node cluster keeps the stream at R3', async () => {
  const info = await publisher.jsm.streams.info(STREAM.name);
  expect(info.config.num_replicas).toBe(3);
  expect(info.cluster?.leader).toMatch(/^nats-\d$/);
  expect(info.cluster?.replicas?.length).toBe(2);
});

it('the stream leader SIGKILLed mid-run and restarted: every checkpoint stored exactly once', async () => {
  const runId = 'cluster-run';
  const widths = [16, 32];
  const steps = 12;
  await retry('run record', () => publisher.publishRecords([runRecord(runId)]));
  let killed: number | undefined;
  for (let step = 0; step < steps; step++) {
    if (step === 5) {
      const leader = (await publisher.jsm.streams.info(STREAM.name)).cluster!.leader!;
      killed = Number(leader.split('-')[1]) - 1;
      process.kill(cluster.nodes[killed].pid, 'SIGKILL');
    }
    if (step === 9 && killed !== undefined) await cluster.restartNode(killed);
    const batch: CmRecord[] = widths.map((w, i) => labelsRecord(runId, `layer${i}`, step, w));
    // what the concept service does: a publish not acknowledged (leader gone, election running) is
    // sent again; the message ids make the resend harmless
    await retry(`step ${step}`, () => publisher.publishRecords(batch), 60_000);
  }
  expect(killed).toBeDefined();
  const expected = steps * widths.reduce((a, b) => a + b, 0);
  const counts = async (): Promise<{ final: number; distinct: number }> => {
    const [row] = await store.query<{ final: string; distinct: string }>(
      `SELECT count() AS final, uniqExact(layer, step, neuron) AS distinct FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
    );
    return { final: Number(row.final), distinct: Number(row.distinct) };
  };
  expect(await waitFor(async () => (await counts()).final === expected, 60_000, 200)).toBe(true);
  expect(await counts()).toEqual({ final: expected, distinct: expected });
  // the restarted node caught up: the stream has three current replicas again
  expect(
    await waitFor(
      async () => {
        const info = await publisher.jsm.streams.info(STREAM.name);
        return (info.cluster?.replicas ?? []).every((r) => r.current && !r.offline);
      },
      30_000,
      250,
    ),
  ).toBe(true);
}, 180_000);
