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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus } from '@cm/bus';
import { createLogger, setLogLevel } from '@cm/core';
import { DissectPool } from '@cm/dissect';
import { ConceptEngine } from '@cm/engine';
import { createMonitorClient } from '@cm/monitor-client';
import { busSink, createConceptServer, type CheckpointInfo } from '@cm/concept-server';
import { startBenchPipeline } from './pipeline';
import { randomSpace } from './random-space';

const DB = 'cm_bench_latency';
const WIDTHS = [64, 128, 256, 512];

async function main(): Promise<void> {
  setLogLevel('warn');
  const [checkpoints = 5, workers = 2] = process.argv.slice(2).map(Number);
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-latency-'));
  const pipeline = await startBenchPipeline({ dir, database: DB });
  const bus = await connectBus({ url: pipeline.nats.url, name: 'bench-service' });
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
      await pipeline.rowsQueryable(runId, step, neurons, 30_000, 20);
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
    await pipeline.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
