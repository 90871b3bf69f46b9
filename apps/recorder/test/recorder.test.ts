import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { headers } from 'nats';
import { connectBus, type Bus } from '@cm/bus';
import { CONSUMERS, STREAM, subjectFor, toLabelsColumnsRecord, type CmRecord } from '@cm/contracts';
import { freePort, waitFor } from '@cm/core';
import { startClickHouse, startNats, type ManagedServer } from '@cm/stack';
import { neuronLabelsSql, openStore, sqlString, type Store } from '@cm/store';
import { RecorderConsumer } from '@cm/recorder-consumer';
import { labelsRecord, runRecord, sampleRun } from '../../../libs/store/test/fixtures';

/**
 * End to end on real servers: records published on nats-server, the recorder (in process, then as
 * its own process killed mid-stream), rows in clickhouse-server 18.16, exactly once.
 */
const DB = 'cm_recorder_test';
const dir = mkdtempSync(join(tmpdir(), 'cm-recorder-'));
let nats: ManagedServer;
let clickhouse: ManagedServer;
let bus: Bus;
let store: Store;

beforeAll(async () => {
  [nats, clickhouse] = await Promise.all([
    (async () =>
      startNats({ dir: join(dir, 'nats'), port: await freePort(), monitorPort: await freePort() }))(),
    (async () =>
      startClickHouse({ dir: join(dir, 'ch'), httpPort: await freePort(), tcpPort: await freePort() }))(),
  ]);
  bus = await connectBus({ url: nats.url });
  await bus.ensureStream();
  store = await openStore({
    kind: 'server',
    url: clickhouse.url,
    user: 'default',
    password: '',
    database: DB,
  });
  await store.migrate();
}, 90_000);

afterAll(async () => {
  await bus?.close();
  await store?.close();
  await nats?.stop();
  await clickhouse?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function labelStats(runId: string): Promise<{ final: number; distinct: number }> {
  const rows = await store.query<{ final: string | number; distinct: string | number }>(
    `SELECT count() AS final, uniqExact(layer, step, neuron) AS distinct FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  return { final: Number(rows[0].final), distinct: Number(rows[0].distinct) };
}

/** Publish raw bytes on a subject with a fresh message id (bypasses the bus's validation and de-duplication). */
async function publishRaw(subject: string, body: string, msgId: string): Promise<void> {
  const h = headers();
  h.set('Nats-Msg-Id', msgId);
  await bus.js.publish(subject, new TextEncoder().encode(body), { headers: h });
}

describe('RecorderConsumer (in process)', () => {
  it('stores every record once despite resends and duplicates, terminating malformed messages', async () => {
    const runId = "in-process 'run'";
    const records = sampleRun(runId, 3);
    const recorder = new RecorderConsumer({
      js: bus.js,
      jsm: bus.jsm,
      store,
      batchMessages: 4,
      lingerMs: 50,
      ackWaitMs: 5_000,
    });
    await recorder.start();
    try {
      await bus.publishRecords(records);
      await bus.publishRecords(records); // resend: dropped by JetStream (same ids)
      // the same records again under other ids: JetStream stores them, the tables must absorb them
      for (const [i, r] of records.entries())
        await publishRaw(subjectFor(r.kind, r.runId), JSON.stringify(r), `again-${i}`);
      await publishRaw(subjectFor('labels', runId), '{not json', 'bad-1');
      await publishRaw(
        subjectFor('labels', runId),
        JSON.stringify({ kind: 'labels', runId, layer: 'fc', step: -1, labels: [], time: 'x' }),
        'bad-2',
      );
      await publishRaw(subjectFor('alert', 'another-run'), JSON.stringify(records[1]), 'bad-3'); // subject does not match the record
      await publishRaw(
        subjectFor('labels', runId),
        JSON.stringify({ ...labelsRecord(runId, 'fc', 7, 3), step: 2 ** 40 }),
        'bad-4',
      ); // no column holds it
      // the stream goes on after malformed messages
      await bus.publishRecords([labelsRecord(runId, 'late', 900, 5)]);

      const expected = 3 * (4 + 3) + 5;
      expect(
        await waitFor(
          async () => (await labelStats(runId)).final === expected && recorder.stats.terminated === 4,
          20_000,
        ),
      ).toBe(true);
      expect(await labelStats(runId)).toEqual({ final: expected, distinct: expected });
      expect(recorder.stats.terminated).toBe(4);
      const labels = await store.query<{ concept: string; neuron: number }>(
        neuronLabelsSql(DB, { runId, layer: 'late', step: 900 }),
      );
      expect(labels.map((l) => l.neuron)).toEqual([0, 1, 2, 3, 4]);
      const checkpoints = await store.query(
        `SELECT step FROM checkpoints FINAL WHERE run_id = ${sqlString(runId)}`,
      );
      expect(checkpoints).toHaveLength(3);
    } finally {
      await recorder.stop();
    }
    // everything was acked or terminated: nothing left for the next consumer
    const info = await bus.jsm.consumers.info(STREAM.name, CONSUMERS.recorder);
    expect(info.num_pending + info.num_ack_pending).toBe(0);
  });

  it('stores labels published in the columnar form exactly like the row form, terminating malformed ones', async () => {
    const runId = 'columnar-run';
    const columnsBus = await connectBus({ url: nats.url, labelEncoding: 'columns' });
    const recorder = new RecorderConsumer({
      js: bus.js,
      jsm: bus.jsm,
      store,
      batchMessages: 5,
      lingerMs: 20,
      ackWaitMs: 5_000,
    });
    await recorder.start();
    try {
      const records = [runRecord(runId), labelsRecord(runId, 'fc', 1, 10), labelsRecord(runId, 'conv', 1, 7)];
      await columnsBus.publishRecords(records);
      await bus.publishRecords(records.slice(1)); // the same labels in the row form: same ids, dropped
      const good = toLabelsColumnsRecord(labelsRecord(runId, 'late', 2, 4));
      await publishRaw(
        subjectFor('labels', runId),
        JSON.stringify({ ...good, columns: { ...good.columns, concept: [0, 1, 99, 0] } }),
        'bad-columns-1',
      );
      await publishRaw(
        subjectFor('labels', runId),
        JSON.stringify({ ...good, columns: { ...good.columns, neuron: [0, 1, 2, 2 ** 40] } }),
        'bad-columns-2',
      );
      await columnsBus.publishRecords([labelsRecord(runId, 'late', 2, 4)]);
      expect(
        await waitFor(
          async () => (await labelStats(runId)).final === 21 && recorder.stats.terminated === 2,
          20_000,
        ),
      ).toBe(true);
      expect(await labelStats(runId)).toEqual({ final: 21, distinct: 21 });
      const stored = await store.query<Record<string, unknown>>(
        neuronLabelsSql(DB, { runId, layer: 'fc', step: 1 }),
      );
      const expected = labelsRecord(runId, 'fc', 1, 10).labels;
      expect(stored.map((r) => [r.neuron, r.concept, r.category, r.top_concepts])).toEqual(
        expected.map((l) => [l.neuron, l.concept, l.category, l.topConcepts]),
      );
    } finally {
      await recorder.stop();
      await columnsBus.close();
    }
  });

  it('naks a batch whose insert fails and stores it once the store is back', async () => {
    const runId = 'flaky-store-run';
    let failuresLeft = 2;
    // the real store, made to refuse its first two inserts (as a restarting server would)
    const flaky = Object.create(store) as Store;
    flaky.insertRows = async (rows) => {
      if (failuresLeft-- > 0) throw new Error('store restarting');
      return store.insertRows(rows);
    };
    const recorder = new RecorderConsumer({
      js: bus.js,
      jsm: bus.jsm,
      store: flaky,
      batchMessages: 50,
      lingerMs: 20,
      ackWaitMs: 10_000,
    });
    await recorder.start();
    try {
      await bus.publishRecords([
        runRecord(runId),
        labelsRecord(runId, 'fc', 1, 10),
        labelsRecord(runId, 'fc', 2, 10),
      ]);
      expect(await waitFor(async () => (await labelStats(runId)).final === 20, 20_000)).toBe(true);
      expect(recorder.stats.failedInserts).toBe(2);
      expect(recorder.healthy()).toBe(true);
      expect(await labelStats(runId)).toEqual({ final: 20, distinct: 20 });
    } finally {
      await recorder.stop();
    }
  });
});

describe('recorder process', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });

  async function spawnRecorder(healthPort: number): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(__dirname, '../src/main.ts')], {
      cwd: resolve(__dirname, '../../..'),
      env: {
        ...process.env,
        CM_NATS_URL: nats.url,
        CM_CLICKHOUSE_URL: clickhouse.url,
        CM_CLICKHOUSE_DATABASE: DB,
        CM_RECORDER_HEALTH_PORT: String(healthPort),
        CM_RECORDER_BATCH_MESSAGES: '20',
        CM_RECORDER_ACK_WAIT_MS: '2000',
        CM_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    const ok = await waitFor(async () => (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).ok, 30_000);
    if (!ok) throw new Error('recorder did not become healthy');
    return child;
  }

  it('killed and restarted mid-stream: every neuron row exactly once, clean exit on SIGTERM', async () => {
    const runId = 'killed-run';
    const layers = ['l64', 'l128', 'l256', 'l512'];
    const widths = [64, 128, 256, 512];
    const steps = 30;
    const expected = steps * widths.reduce((a, b) => a + b, 0);

    const healthPort = await freePort();
    const first = await spawnRecorder(healthPort);
    // publish the whole run in the background while the recorder works through it
    const publishing = (async () => {
      await bus.publishRecords([runRecord(runId)]);
      for (let step = 0; step < steps; step++) {
        const batch: CmRecord[] = layers.map((layer, i) => labelsRecord(runId, layer, step, widths[i]));
        await bus.publishRecords(batch);
      }
    })();
    expect(await waitFor(async () => (await labelStats(runId)).final > 0, 30_000, 20)).toBe(true);
    first.kill('SIGKILL'); // mid-stream: some batches inserted but not acked
    await new Promise((r) => first.once('exit', r));
    await publishing;
    const before = await labelStats(runId);
    expect(before.final).toBeLessThan(expected);

    const second = await spawnRecorder(healthPort);
    expect(await waitFor(async () => (await labelStats(runId)).final === expected, 60_000, 100)).toBe(true);
    // wait past one ack wait: redeliveries of rows already stored must not add any
    await new Promise((r) => setTimeout(r, 2500));
    expect(await labelStats(runId)).toEqual({ final: expected, distinct: expected });

    const health = (await (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).json()) as Record<
      string,
      unknown
    >;
    expect(health).toMatchObject({ status: 'ok', nats: 'connected' });

    let stderr = '';
    second.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    second.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => second.once('exit', (c) => r(c)));
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  }, 120_000);

  /** Poll /healthz until its status code is `code`; the time it took, or undefined past `withinMs`. */
  async function healthTurns(port: number, code: number, withinMs: number): Promise<number | undefined> {
    const started = Date.now();
    const ok = await waitFor(
      async () =>
        (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(4000) })).status ===
        code,
      withinMs,
      100,
    );
    return ok ? Date.now() - started : undefined;
  }

  it('health tells the truth: 503 within 5 s while nats-server or clickhouse-server is frozen, 200 after', async () => {
    const healthPort = await freePort();
    const child = await spawnRecorder(healthPort);
    try {
      for (const server of [nats, clickhouse]) {
        process.kill(server.pid, 'SIGSTOP');
        let down: number | undefined;
        let report: Record<string, unknown> = {};
        try {
          down = await healthTurns(healthPort, 503, 5000);
          report = (await (await fetch(`http://127.0.0.1:${healthPort}/healthz`)).json()) as Record<
            string,
            unknown
          >;
        } finally {
          process.kill(server.pid, 'SIGCONT');
        }
        expect({ server: server.name, down: down !== undefined }).toEqual({
          server: server.name,
          down: true,
        });
        expect(report.status).toBe('unhealthy');
        if (server === nats) expect(report).toMatchObject({ nats: 'unreachable', clickhouse: 'ok' });
        else expect(report).toMatchObject({ nats: 'connected', jetstream: 'jetstream ok' });
        expect(await healthTurns(healthPort, 200, 15_000)).toBeDefined();
      }
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 90_000);

  /** One sample of a Prometheus text exposition: `name{labels} value`. */
  function sample(text: string, name: string, labels = ''): number | undefined {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  it('/metrics counts what was sent: messages, rows per table, terminated, consumer lag', async () => {
    const healthPort = await freePort();
    const child = await spawnRecorder(healthPort);
    try {
      const runId = 'metrics-run';
      const widths = [8, 16];
      await bus.publishRecords([runRecord(runId)]);
      for (let step = 0; step < 3; step++)
        await bus.publishRecords(widths.map((w, i) => labelsRecord(runId, `l${i}`, step, w)));
      await publishRaw(subjectFor('labels', runId), '{not json', 'metrics-bad-1');
      const expectedLabels = 3 * (8 + 16);
      expect(await waitFor(async () => (await labelStats(runId)).final === expectedLabels, 30_000, 50)).toBe(
        true,
      );
      // The rows are queryable when ClickHouse has them, a moment before the recorder has read the
      // insert's answer and counted them (and a malformed message is counted as it is decoded,
      // before the insert): wait for the exposition to show the whole batch, then check each figure.
      let text = '';
      const settled = await waitFor(async () => {
        text = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
        return (
          sample(text, 'cm_recorder_messages_terminated_total') === 1 &&
          sample(text, 'cm_recorder_messages_stored_total') === 1 + 3 * widths.length
        );
      }, 10_000);
      expect(settled).toBe(true);
      expect(sample(text, 'cm_recorder_rows_inserted_total', 'table="neuron_labels"')).toBe(expectedLabels);
      expect(sample(text, 'cm_recorder_rows_inserted_total', 'table="runs"')).toBe(1);
      expect(sample(text, 'cm_recorder_messages_stored_total')).toBe(1 + 3 * widths.length);
      expect(sample(text, 'cm_recorder_consumer_pending_messages')).toBe(0);
      expect(sample(text, 'cm_recorder_insert_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'cm_process_resident_memory_bytes')).toBeGreaterThan(0);
      expect(text).toContain('service="recorder"');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }, 60_000);
});
