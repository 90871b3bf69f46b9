/**
 * From the end of a checkpoint to its rows being queryable in ClickHouse, on the real pipeline:
 * client -> gRPC -> concept service (in this process, DissectPool) -> nats-server JetStream ->
 * recorder (own process) -> clickhouse-server. Layers of 64, 128, 256 and 512 neurons (pooled
 * [D, N] float32), D = 2000 probe images, S = 1000 concepts (a random concept space).
 * t0 = sendCheckpoint called (so the time includes sending 7.7 MB); t1 = all 960 label rows of the
 * step counted in ClickHouse (polled every 20 ms).
 *
 *   npm run bench:latency -- [checkpoints=5] [workers=2]
 *
 * Target (issue 5): <= 2 s.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectBus } from '@cm/bus';
import { createLogger, freePort, setLogLevel, waitFor } from '@cm/core';
import { DissectPool } from '@cm/dissect';
import { ConceptEngine } from '@cm/engine';
import { createMonitorClient } from '@cm/monitor-client';
import { startClickHouse, startNats } from '@cm/stack';
import { openStore, sqlString } from '@cm/store';
import { busSink, createConceptServer, type CheckpointInfo } from '@cm/concept-server';
import { randomSpace } from './random-space';

const DB = 'cm_bench_latency';
const WIDTHS = [64, 128, 256, 512];

async function main(): Promise<void> {
  setLogLevel('warn');
  const [checkpoints = 5, workers = 2] = process.argv.slice(2).map(Number);
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-latency-'));
  const nats = await startNats({
    dir: join(dir, 'nats'),
    port: await freePort(),
    monitorPort: await freePort(),
  });
  const ch = await startClickHouse({
    dir: join(dir, 'ch'),
    httpPort: await freePort(),
    tcpPort: await freePort(),
  });
  const store = await openStore({ kind: 'server', url: ch.url, user: 'default', password: '', database: DB });
  await store.migrate();
  const recorderHealth = await freePort();
  const recorder = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(__dirname, '../../apps/recorder/src/main.ts')],
    {
      cwd: resolve(__dirname, '../..'),
      env: {
        ...process.env,
        CM_NATS_URL: nats.url,
        CM_CLICKHOUSE_URL: ch.url,
        CM_CLICKHOUSE_DATABASE: DB,
        CM_RECORDER_HEALTH_PORT: String(recorderHealth),
        CM_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const bus = await connectBus({ url: nats.url, name: 'bench-service' });
  await bus.ensureStream();
  const space = randomSpace(2000, 1000, 64, 3);
  const pool = new DissectPool({ workers });
  const engine = new ConceptEngine({ bundles: { get: (id) => ({ id, space }) }, dissector: pool });
  const infos = new Map<number, CheckpointInfo>();
  const server = createConceptServer({
    engine,
    sink: busSink(bus),
    log: createLogger('bench'),
    onCheckpoint: (i) => infos.set(i.step, i),
  });
  const port = await server.listen('127.0.0.1:0');
  const client = createMonitorClient({ target: `127.0.0.1:${port}` });
  const results: { step: number; ackMs: number; queryableMs: number }[] = [];
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${recorderHealth}/healthz`)).ok, 60_000, 200);
    const runId = `latency-${Date.now()}`;
    await client.startRun({
      runId,
      model: 'bench',
      paradigm: 'standard',
      bundleId: 'random',
      layers: WIDTHS.map((w) => ({ name: `l${w}`, width: w, kind: 'dense' as const })),
      tags: {},
    });
    const neurons = WIDTHS.reduce((a, w) => a + w, 0);
    // a trainer computes its first checkpoint after startRun; give the service's warm-up that time
    await new Promise((r) => setTimeout(r, Number(process.env.CM_BENCH_FIRST_CHECKPOINT_AFTER_MS ?? 3000)));
    for (let step = 0; step < checkpoints; step++) {
      const layers = WIDTHS.map((w) => {
        const data = new Float32Array(2000 * w);
        for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37 + step) + ((i * 7919) % 13) / 13;
        return { layer: `l${w}`, shape: [2000, w], data };
      });
      const t0 = performance.now();
      await client.sendCheckpoint({ step, layers, metrics: { loss: 1 / (step + 1) } });
      const ackMs = performance.now() - t0;
      await waitFor(
        async () => {
          const [row] = await store.query<{ n: string | number }>(
            `SELECT count() AS n FROM neuron_labels WHERE run_id = ${sqlString(runId)} AND step = ${step}`,
          );
          return Number(row.n) >= neurons;
        },
        30_000,
        20,
      );
      results.push({ step, ackMs, queryableMs: performance.now() - t0 });
    }
    console.log(
      `checkpoint latency: layers ${WIDTHS.join('/')} neurons, 2000 probe images, 1000 concepts, ${workers} dissect worker(s)`,
    );
    for (const r of results) {
      const i = infos.get(r.step);
      console.log(
        `  step ${r.step}: acked (dissected + in JetStream) ${r.ackMs.toFixed(0)} ms [service: receive ${i?.receiveMs} ms, process ${i?.processMs} ms]; rows queryable ${r.queryableMs.toFixed(0)} ms`,
      );
    }
    const sorted = results.map((r) => r.queryableMs).sort((a, b) => a - b);
    console.log(
      `end of checkpoint -> rows queryable in ClickHouse: median ${sorted[Math.floor(sorted.length / 2)].toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms (target <= 2000 ms)`,
    );
  } finally {
    await client.close();
    await server.stop(1000);
    await pool.close();
    await bus.close();
    recorder.kill('SIGTERM');
    await new Promise((r) => recorder.once('exit', r));
    await store.close();
    await nats.stop();
    await ch.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
