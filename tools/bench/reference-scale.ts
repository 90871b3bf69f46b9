/**
 * One checkpoint at CLIP-Dissect's own scale (issue 15), through the real services: five layers of
 * a ResNet-50-sized monitor (conv1 64, layer1 256, layer2 512, layer3 1024, layer4 2048 channels =
 * 3,904 neurons), sent raw as [D, H, W, C] spatial outputs (H = W = 2: the raw checkpoint is
 * D x 4 x 3,904 float32 = 625 MB at D = 10,000, which the client streams in 4 MiB chunks and the
 * service average-pools), D = 10,000 probe images, S = 20,000 concepts with a CLIP-like P
 * (0.2 +- 0.05, each neuron's planted concept +0.08 on its most active images), soft_wpmi.
 *
 * client (this process) -> gRPC -> concept service (its own process, CM_DISSECT_WORKERS workers,
 * the bundle loaded from disk by BundleDirectory) -> nats-server JetStream -> recorder (own process)
 * -> clickhouse-server. t0 = sendCheckpoint called; t1 = all 3,904 label rows of the step counted
 * in ClickHouse (polled every 50 ms). The service's peak RSS is its VmHWM (/proc/<pid>/status).
 *
 *   npm run bench:reference-scale -- [--D 10000] [--S 20000] [--checkpoints 2] [--workers 2] [--hw 2] [--memory-trace]
 *
 * Goals (issue 15), each printed with PASS / FAIL: at most 8 s end to end; service peak RSS at
 * most 4 GiB, and at most its inputs + 1 GiB (inputs = P as stored + the raw checkpoint). The
 * service's own log (CM_LOG_FORMAT=json) gives the split: receive (first chunk to checkpoint end),
 * dissect (pool + dissect, checkpoint end to records), publish (to JetStream); its RSS is sampled
 * every 20 ms to say in which phase the peak falls. The service computes the bundle's
 * softmax and null calibration when the run starts (a trainer computes its first checkpoint
 * meanwhile); the bench waits until the service's CPU time stops growing before the first
 * checkpoint, and prints how long that warm-up took.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, setLogLevel } from '@cm/core';
import { fitProjection } from '@cm/dissect';
import { createMonitorClient } from '@cm/monitor-client';
import { mulberry32, normaliseRows, writeBundleInto } from '@cm/probe';
import { sqlString } from '@cm/store';
import { startBenchPipeline, startNodeApp, stopChild, waitHealthy } from './pipeline';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const D = arg('D', 10_000);
const S = arg('S', 20_000);
const CHECKPOINTS = arg('checkpoints', 2);
const WORKERS = arg('workers', 2);
const HW = arg('hw', 2);
/** --memory-trace: the service logs at debug level and its memory at each stage of a checkpoint is printed (session.ts logMemory). */
const MEMORY_TRACE = process.argv.includes('--memory-trace');
const EMBED_DIM = 64;
const WIDTHS = [64, 256, 512, 1024, 2048];
const DB = 'cm_bench_reference_scale';

/** The bundle: CLIP-like P with each neuron's planted concept, tiny images (the service only needs P). */
async function writeReferenceBundle(
  root: string,
  planted: Int32Array,
  fires: (i: number, n: number) => boolean,
) {
  const rnd = mulberry32(11).next;
  const p = new Float32Array(D * S);
  for (let i = 0; i < p.length; i++) p[i] = 0.2 + 0.1 * (rnd() - 0.5);
  const neurons = planted.length;
  for (let i = 0; i < D; i++)
    for (let n = 0; n < neurons; n++) if (fires(i, n)) p[i * S + planted[n]] += 0.08;
  const emb = normaliseRows({
    rows: S,
    cols: EMBED_DIM,
    data: Float32Array.from({ length: S * EMBED_DIM }, () => rnd() - 0.5),
  });
  return writeBundleInto(root, {
    // a bundle format source kind: the bench's P stands in for CLIP's I T^T (no image files)
    source: { kind: 'clip', model: 'bench: CLIP-like random P', imageFiles: [], conceptsFile: 'bench' },
    probeScoresMode: 'clip',
    provenance: { probeScores: 'bench: CLIP-like random', conceptEmbeddings: 'random', projection: 'pca' },
    images: new Uint8Array(D * 2 * 2 * 3),
    imageShape: [D, 2, 2, 3],
    space: {
      concepts: Array.from({ length: S }, (_, j) => `concept-${j}`),
      categories: Array.from({ length: S }, (_, j) => ['colour', 'texture', 'shape', 'object'][j % 4]),
      probeScores: { rows: D, cols: S, data: p },
      conceptEmbeddings: emb,
      projection: fitProjection(emb),
    },
  });
}

/** Activation of neuron n (of the 3,904) on image i at spatial position s: pooled, it fires on its top images. */
function activation(i: number, n: number, s: number): number {
  const h = Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(n + 1, 0x85ebca6b) ^ Math.imul(s + 1, 0xc2b2ae35);
  return ((h >>> 0) % 10007) / 10007;
}

function procStatus(pid: number, key: string): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

/** What the service logs per acked checkpoint (session.ts CheckpointInfo). */
interface ServiceCheckpointLog {
  step: number;
  receiveMs: number;
  processMs: number;
  publishMs: number;
}

/** The service's json log lines: checkpoint infos collected, warnings and errors passed on. */
function followServiceLog(child: ChildProcess): Map<number, ServiceCheckpointLog> {
  const acked = new Map<number, ServiceCheckpointLog>();
  if (!child.stderr) return acked;
  createInterface({ input: child.stderr }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string } & Partial<ServiceCheckpointLog>;
      if (
        entry.msg?.startsWith('checkpoint ') &&
        typeof entry.step === 'number' &&
        entry.receiveMs !== undefined
      )
        acked.set(entry.step, entry as ServiceCheckpointLog);
      else if (MEMORY_TRACE && entry.msg?.startsWith('memory ')) {
        const m = entry as Record<string, unknown>;
        console.log(
          `    [service ${entry.msg}${m.layer ? ` ${String(m.layer)}` : ''}] rss ${String(m.rssMiB)} MiB, array buffers ${String(m.arrayBuffersMiB)} MiB, heap ${String(m.heapUsedMiB)} MiB`,
        );
      } else if (entry.level === 'warn' || entry.level === 'error') console.error(`[service] ${line}`);
    } catch {
      console.error(`[service] ${line}`);
    }
  });
  return acked;
}

/** VmRSS of `pid` every 20 ms until stopped: the highest value and when it was seen. */
function sampleRss(pid: number): () => { peakMiB: number; atMs: number } {
  const t0 = performance.now();
  let peak = { peakMiB: 0, atMs: 0 };
  const timer = setInterval(() => {
    const rss = procStatus(pid, 'VmRSS');
    if (rss > peak.peakMiB) peak = { peakMiB: rss, atMs: performance.now() - t0 };
  }, 20);
  return () => {
    clearInterval(timer);
    return peak;
  };
}

const verdict = (ok: boolean): string => (ok ? 'PASS' : 'FAIL');

async function main(): Promise<void> {
  setLogLevel('warn');
  const neurons = WIDTHS.reduce((a, w) => a + w, 0);
  console.log(
    `reference scale: layers ${WIDTHS.join('/')} (${neurons} neurons) as [D, ${HW}, ${HW}, C], D=${D}, S=${S}, soft_wpmi, ${WORKERS} dissect workers; load ${loadavg()[0].toFixed(2)}`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-refscale-'));
  const bundleRoot = join(dir, 'bundles');
  mkdirSync(bundleRoot);
  const planted = Int32Array.from({ length: neurons }, (_, n) => (n * 7919) % S);
  // a neuron "fires" (planted concept shown) on images whose pooled activation is high
  const pooled = (i: number, n: number): number => {
    let sum = 0;
    for (let s = 0; s < HW * HW; s++) sum += activation(i, n, s);
    return sum / (HW * HW);
  };
  const tBundle = performance.now();
  const { id: bundleId } = await writeReferenceBundle(bundleRoot, planted, (i, n) => pooled(i, n) > 0.8);
  console.log(
    `bundle ${bundleId} written in ${((performance.now() - tBundle) / 1000).toFixed(1)} s (P ${((D * S * 4) / 2 ** 20).toFixed(0)} MiB)`,
  );

  const pipeline = await startBenchPipeline({ dir, database: DB });
  const { store } = pipeline;
  const grpcPort = await freePort();
  const serviceHealth = await freePort();
  const service = startNodeApp('apps/concept-service/src/main.ts', {
    CM_GRPC_LISTEN: `127.0.0.1:${grpcPort}`,
    CM_NATS_URL: pipeline.nats.url,
    CM_BUNDLE_DIR: bundleRoot,
    CM_DISSECT_WORKERS: String(WORKERS),
    CM_SERVICE_HEALTH_PORT: String(serviceHealth),
    CM_LOG_LEVEL: MEMORY_TRACE ? 'debug' : 'info',
    CM_LOG_FORMAT: 'json',
  });
  const serviceLog = followServiceLog(service);
  // the raw checkpoint (625 MB at D = 10,000) is buffered until acknowledged
  const client = createMonitorClient({ target: `127.0.0.1:${grpcPort}`, maxBufferedBytes: 2 ** 31 });
  try {
    await waitHealthy('concept service', serviceHealth);
    const pid = service.pid as number;
    const rssBefore = procStatus(pid, 'VmRSS');
    const runId = `refscale-${Date.now()}`;
    const tStart = performance.now();
    await client.startRun({
      runId,
      model: 'resnet50-sized',
      paradigm: 'standard',
      bundleId,
      layers: WIDTHS.map((w, l) => ({ name: `layer${l}`, width: w, kind: 'conv' as const })),
      tags: {},
    });
    const startMs = performance.now() - tStart;
    // warm-up: the bundle load, softmax and calibration the run start triggers; done when the
    // service's CPU time stops growing (< 0.05 s over 1 s)
    let last = cpuSeconds(pid);
    for (;;) {
      await new Promise((r) => setTimeout(r, 1000));
      const now = cpuSeconds(pid);
      if (now - last < 0.05) break;
      last = now;
    }
    const warmUpS = (performance.now() - tStart) / 1000;
    const rssWarm = procStatus(pid, 'VmHWM');
    console.log(
      `service: RSS ${rssBefore.toFixed(0)} MiB idle; startRun acked in ${startMs.toFixed(0)} ms; warm-up (bundle, softmax, calibration) done after ${warmUpS.toFixed(1)} s, peak RSS so far ${rssWarm.toFixed(0)} MiB`,
    );
    let offset = 0;
    const layerInputs = WIDTHS.map((w, l) => {
      const first = offset;
      offset += w;
      return { w, l, first };
    });
    for (let step = 0; step < CHECKPOINTS; step++) {
      const layers = layerInputs.map(({ w, l, first }) => {
        const data = new Float32Array(D * HW * HW * w);
        for (let i = 0; i < D; i++)
          for (let s = 0; s < HW * HW; s++)
            for (let c = 0; c < w; c++)
              data[(i * HW * HW + s) * w + c] = activation(i, first + c, s) + 0.01 * step * Math.sin(c + s);
        return { layer: `layer${l}`, shape: [D, HW, HW, w], data };
      });
      const bytes = layers.reduce((a, l) => a + l.data.byteLength, 0);
      const stopSampling = sampleRss(pid);
      const cpu0 = cpuSeconds(pid);
      const t0 = performance.now();
      await client.sendCheckpoint({ step, layers, metrics: { loss: 1 / (step + 1) } });
      const ackMs = performance.now() - t0;
      await pipeline.rowsQueryable(runId, step, neurons, 120_000, 50);
      const queryableS = (performance.now() - t0) / 1000;
      const sampled = stopSampling();
      // CPU seconds of the service (all its threads): less sensitive to other load than wall time
      const serviceCpu = cpuSeconds(pid) - cpu0;
      // neuron n of the monitor (layers in order) had concept (n * 7919) % S planted
      const globalNeuron = `multiIf(${layerInputs.map(({ l, first }) => `layer = 'layer${l}', ${first}`).join(', ')}, 0) + neuron`;
      const [labelled] = await store.query<{ n: string | number }>(
        `SELECT count() AS n FROM neuron_labels WHERE run_id = ${sqlString(runId)} AND step = ${step} AND concept = concat('concept-', toString((${globalNeuron}) * 7919 % ${S}))`,
      );
      const peak = procStatus(pid, 'VmHWM');
      const bound = (D * S * 4 + bytes) / 2 ** 20 + 1024;
      const info = serviceLog.get(step);
      const split = info
        ? `receive ${(info.receiveMs / 1000).toFixed(2)} s, pool + dissect ${((info.processMs - info.publishMs) / 1000).toFixed(2)} s, publish ${(info.publishMs / 1000).toFixed(2)} s`
        : 'service split not logged';
      const cpuNote = `${serviceCpu.toFixed(1)} s CPU`;
      console.log(
        `  step ${step} (load ${loadavg()[0].toFixed(2)}): ${(bytes / 2 ** 20).toFixed(0)} MiB raw; acked (dissected, in JetStream) ${(ackMs / 1000).toFixed(2)} s [service: ${split}; ${cpuNote}]; ` +
          `rows queryable in ClickHouse ${queryableS.toFixed(2)} s (goal <= 8 s: ${verdict(queryableS <= 8)}); ` +
          `service peak RSS ${peak.toFixed(0)} MiB (goal <= 4096: ${verdict(peak <= 4096)}; inputs + 1 GiB = ${bound.toFixed(0)}: ${verdict(peak <= bound)}), ` +
          `this checkpoint's highest sample ${sampled.peakMiB.toFixed(0)} MiB at ${(sampled.atMs / 1000).toFixed(2)} s; planted concept as label: ${labelled.n}/${neurons}`,
      );
    }
  } finally {
    await client.close();
    await stopChild(service);
    await pipeline.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
