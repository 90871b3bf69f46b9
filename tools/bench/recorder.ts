/**
 * Recorder benchmark: label rows per second from JetStream into clickhouse-server, and the pieces.
 *
 *   npm run bench:recorder [-- --steps 200 --batch 100 --encoding columns|rows|both --repeat 1]
 *
 * Starts its own nats-server and clickhouse-server (18.16 from apt) on free ports in a temp folder,
 * then measures, printing one line each:
 *  1. store.insertRecords straight into clickhouse-server (no NATS),
 *  2. the same into embedded chDB,
 *  3. publishing the records to JetStream (awaiting every PubAck), labels in the `--encoding` form
 *     (columns: the compact columnar LabelsColumnsRecord; rows: the LabelsRecord JSON),
 *  4. the recorder draining that backlog: JetStream -> validate -> insert -> ack (the figure that
 *     must reach 100k label rows/s), with the recorder's own CPU time; `--repeat n` drains n
 *     backlogs and prints the median,
 *  5. one checkpoint (layers of 64, 128, 256, 512 neurons) from publish to queryable with FINAL,
 *     with the recorder live (median of 5).
 * Checkpoints use layers of 64/128/256/512 neurons (960 label rows per checkpoint). The machine's
 * load average is printed with the figures: on a shared machine they mean little without it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus, type LabelEncoding } from '@cm/bus';
import type { CmRecord } from '@cm/contracts';
import { freePort, setLogLevel, waitFor } from '@cm/core';
import { startClickHouse, startNats } from '@cm/stack';
import { openStore, sqlString, type Store } from '@cm/store';
import { RecorderConsumer } from '@cm/recorder-consumer';
import { labelsRecord, runRecord } from '../../libs/store/test/fixtures';
import { arg, argText, loadText as load, median } from './args';

const WIDTHS = [64, 128, 256, 512];

function checkpointRecords(runId: string, step: number): CmRecord[] {
  return WIDTHS.map((w, i) => labelsRecord(runId, `layer${i}_${w}`, step, w));
}

async function labelCount(store: Store, runId: string): Promise<number> {
  const rows = await store.query<{ n: string }>(
    `SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = ${sqlString(runId)}`,
  );
  return Number(rows[0].n);
}

const line = (what: string, rows: number, ms: number): void =>
  console.log(
    `${what.padEnd(44)} ${String(rows).padStart(8)} rows in ${(ms / 1000).toFixed(2).padStart(6)} s = ${Math.round(
      rows / (ms / 1000),
    )
      .toLocaleString('en-US')
      .padStart(9)} rows/s`,
  );

async function main(): Promise<void> {
  setLogLevel('warn');
  const steps = arg('steps', 200);
  const batchMessages = arg('batch', 100);
  const repeat = arg('repeat', 1);
  const encodingArg = argText('encoding', 'both');
  if (!['rows', 'columns', 'both'].includes(encodingArg))
    throw new Error(`--encoding must be rows, columns or both, got ${encodingArg}`);
  const encodings: LabelEncoding[] =
    encodingArg === 'both' ? ['rows', 'columns'] : [encodingArg as LabelEncoding];
  const rowsPerStep = WIDTHS.reduce((a, b) => a + b, 0);
  const total = steps * rowsPerStep;
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-recorder-'));
  const [nats, clickhouse] = await Promise.all([
    (async () =>
      startNats({ dir: join(dir, 'nats'), port: await freePort(), monitorPort: await freePort() }))(),
    (async () =>
      startClickHouse({ dir: join(dir, 'ch'), httpPort: await freePort(), tcpPort: await freePort() }))(),
  ]);
  const buses = Object.fromEntries(
    await Promise.all(
      (['rows', 'columns'] as const).map(
        async (e) => [e, await connectBus({ url: nats.url, name: `bench-${e}`, labelEncoding: e })] as const,
      ),
    ),
  ) as Record<LabelEncoding, Awaited<ReturnType<typeof connectBus>>>;
  const bus = buses[encodings[encodings.length - 1]];
  const store = await openStore({
    kind: 'server',
    url: clickhouse.url,
    user: 'default',
    password: '',
    database: 'cm_bench',
  });
  const chdb = await openStore({ kind: 'chdb', path: join(dir, 'chdb'), database: 'cm_bench' });
  try {
    await Promise.all([store.migrate(), chdb.migrate(), bus.ensureStream()]);
    console.log(
      `recorder benchmark (load average ${load()}): ${steps} checkpoints x layers ${WIDTHS.join('/')} = ${total} label rows; clickhouse-server ${store.serverVersion}, chDB ${chdb.serverVersion}, nats-server ${bus.nc.info?.version}`,
    );

    const records: CmRecord[] = [runRecord('bench-direct')];
    for (let s = 0; s < steps; s++) records.push(...checkpointRecords('bench-direct', s));
    let t = performance.now();
    for (let i = 0; i < records.length; i += batchMessages)
      await store.insertRecords(records.slice(i, i + batchMessages));
    line('1. insertRecords -> clickhouse-server', total, performance.now() - t);

    t = performance.now();
    for (let i = 0; i < records.length; i += batchMessages)
      await chdb.insertRecords(records.slice(i, i + batchMessages));
    line('2. insertRecords -> chDB', total, performance.now() - t);

    let lastRate = 0;
    for (const encoding of encodings) {
      const rates: number[] = [];
      for (let rep = 0; rep < repeat; rep++) {
        const runId = `bench-recorder-${encoding}-${rep}`;
        const streamed: CmRecord[] = [runRecord(runId)];
        for (let s = 0; s < steps; s++) streamed.push(...checkpointRecords(runId, s));
        t = performance.now();
        await buses[encoding].publishRecords(streamed);
        line(`3. publish -> JetStream (acked, ${encoding})`, total, performance.now() - t);

        const recorder = new RecorderConsumer({ js: bus.js, jsm: bus.jsm, store, batchMessages });
        const cpu0 = process.cpuUsage();
        t = performance.now();
        await recorder.start();
        const drained = await waitFor(async () => recorder.stats.labelRows >= total, 300_000, 5);
        const drainMs = performance.now() - t;
        const cpu = process.cpuUsage(cpu0);
        if (!drained) throw new Error(`recorder stored only ${recorder.stats.labelRows} of ${total} rows`);
        line(`4. recorder (${encoding}): JetStream -> clickhouse`, total, drainMs);
        const { batches, decodeMs, insertMs } = recorder.stats;
        console.log(
          `   ${batches} batches; decode+validate+encode ${(decodeMs / 1000).toFixed(2)} s, insert ${(insertMs / 1000).toFixed(2)} s (overlapping); ` +
            `recorder process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s; load average ${load()}`,
        );
        await recorder.stop();
        const stored = await labelCount(store, runId);
        if (stored !== total) throw new Error(`expected ${total} rows exactly once, found ${stored}`);
        rates.push(total / (drainMs / 1000));
      }
      lastRate = median(rates);
      if (repeat > 1)
        console.log(
          `   median of ${repeat} (${encoding}): ${Math.round(lastRate).toLocaleString('en-US')} rows/s [${rates.map((r) => Math.round(r / 1000) + 'k').join(', ')}]`,
        );
    }

    const recorder = new RecorderConsumer({ js: bus.js, jsm: bus.jsm, store, batchMessages });
    await recorder.start();
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const live = `bench-latency-${i}`;
      t = performance.now();
      await bus.publishRecords(checkpointRecords(live, 0));
      await waitFor(async () => (await labelCount(store, live)) === rowsPerStep, 10_000, 5);
      latencies.push(performance.now() - t);
    }
    latencies.sort((a, b) => a - b);
    console.log(
      `5. one checkpoint (${rowsPerStep} rows) publish -> queryable: median ${latencies[2].toFixed(0)} ms (min ${latencies[0].toFixed(0)}, max ${latencies[4].toFixed(0)})`,
    );
    const rate = lastRate;
    console.log(
      `recorder insert rate (${encodings[encodings.length - 1]}): ${Math.round(rate).toLocaleString('en-US')} label rows/s (target >= 100,000): ${rate >= 100_000 ? 'PASS' : 'BELOW TARGET'}; load average ${load()}`,
    );
    await recorder.stop();
  } finally {
    await buses.rows.close();
    await buses.columns.close();
    await store.close();
    await chdb.close();
    await nats.stop();
    await clickhouse.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
