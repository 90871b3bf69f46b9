/**
 * Soak: concurrent runs for a bounded time against the stack the stack code starts (libs/stack
 * stackUp and appServices, as `cm stack up` does): a 3-node NATS JetStream cluster (stream at R3) or
 * one nats-server (--nats-nodes 1), clickhouse-server (or an S x R ClickHouse cluster with
 * ZooKeeper), the concept service and the recorder as their own processes. Each run streams checkpoints through libs/monitor-client (gRPC) back to back until
 * the time is up; at the end every checkpoint and label row must be stored exactly once.
 *
 *   npm run bench:soak -- [--runs 4] [--minutes 1] [--shards 1] [--replicas 1] [--nats-nodes 3]
 *                         [--widths 64,128,256,512]
 *   (the docs' figures: --runs 16 --minutes 10, with --nats-nodes 1 and with --shards 2 --replicas 2)
 *
 * The default widths are the four stages of a ResNet-18 (64, 128, 256, 512 channels), one layer each.
 *
 * Prints throughput (checkpoints/s, label rows/s), ack latency p50/p95/max, end of checkpoint to
 * queryable p50/p99 (every 10th checkpoint of each run is polled for in ClickHouse), the service's
 * and the recorder's RSS at start and end, and the stored counts against what was acked; its last
 * line reads `soak: <n> checkpoints, <lost> lost, <duplicated> duplicated, p99 <seconds> s`.
 * Everything it starts is stopped by pid (stackDown); loopback only.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, freePortRun, setLogLevel, waitFor } from '@cm/core';
import { plantedActivations, makeTestBundles } from '@cm/engine/src/testing';
import { createMonitorClient } from '@cm/monitor-client';
import { appServices, LOCAL_CLICKHOUSE_CLUSTER, readPid, stackDown, stackUp } from '@cm/stack';
import { openStore, sqlString } from '@cm/store';

const DB = 'cm_bench_soak';
/** ResNet-18's stage widths: what a monitored layer of a small vision network holds. */
const DEFAULT_WIDTHS = '64,128,256,512';

/** Resident memory of a process, MiB (Linux /proc), or NaN when it is gone. */
function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function positiveArg(value: string | undefined, fallback: number, name: string, max: number): number {
  const n = value === undefined ? fallback : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new Error(`${name} must be an integer from 1 to ${max}, got ${value}`);
  return n;
}

const quantile = (sorted: number[], q: number): number =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;

async function main(): Promise<void> {
  setLogLevel('warn');
  const { values: flags } = parseArgs({
    options: {
      runs: { type: 'string' },
      minutes: { type: 'string' },
      shards: { type: 'string' },
      replicas: { type: 'string' },
      'nats-nodes': { type: 'string' },
      widths: { type: 'string' },
    },
  });
  const runs = positiveArg(flags.runs, 4, '--runs', 64);
  const minutes = flags.minutes === undefined ? 1 : Number(flags.minutes);
  if (!(minutes > 0 && minutes <= 60)) throw new Error(`--minutes must be in (0, 60], got ${flags.minutes}`);
  const seconds = minutes * 60;
  const shards = positiveArg(flags.shards, 1, '--shards', 16);
  const replicas = positiveArg(flags.replicas, 1, '--replicas', 8);
  const cluster = shards * replicas > 1;
  const chNodes = shards * replicas;
  const natsNodes = positiveArg(flags['nats-nodes'], 3, '--nats-nodes', 9);
  if (natsNodes === 2) throw new Error('--nats-nodes must be 1 or a cluster of 3 or more, got 2');
  const widths = (flags.widths ?? DEFAULT_WIDTHS)
    .split(',')
    .map((w) => positiveArg(w.trim(), 0, '--widths', 8192));
  const LAYERS = widths.map((width, i) => ({ name: `stage${i + 1}`, width, kind: 'conv' as const }));
  const NEURONS = widths.reduce((a, w) => a + w, 0);

  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-soak-'));
  const bundles = await makeTestBundles(120, 7);
  const ports = {
    natsPort: await freePortRun(natsNodes),
    natsMonitorPort: await freePortRun(natsNodes),
    natsRoutePort: await freePortRun(natsNodes),
    clickhouseHttpPort: await freePortRun(chNodes),
    clickhouseTcpPort: await freePortRun(chNodes),
    clickhouseInterserverPort: await freePortRun(chNodes),
    zookeeperPort: await freePort(),
  };
  const grpcPort = await freePort();
  const serviceHealth = await freePort();
  const recorderHealth = await freePort();
  const chUrl = `http://127.0.0.1:${ports.clickhouseHttpPort}`;
  // what `cm stack up` gives the services (libs/stack appServices), on this bench's ports
  const apps = appServices({
    natsNodes,
    natsPort: ports.natsPort,
    clickhouseHttpPort: ports.clickhouseHttpPort,
    clickhouse: { shards, replicas },
    bundleDir: bundles.root,
    serviceHealthPort: serviceHealth,
    recorderHealthPort: recorderHealth,
    extraEnv: {
      CM_LOG_LEVEL: 'warn',
      CM_CLICKHOUSE_DATABASE: DB,
      CM_GRPC_LISTEN: `127.0.0.1:${grpcPort}`,
      CM_HOME: dir,
    },
  });
  const stackDir = join(dir, 'stack');
  mkdirSync(stackDir);
  let summary: string | undefined;
  try {
    const tUp = performance.now();
    await stackUp({
      dir: stackDir,
      ...ports,
      natsNodes,
      clickhouseShards: shards,
      clickhouseReplicas: replicas,
      apps,
    });
    console.log(
      `stack up in ${((performance.now() - tUp) / 1000).toFixed(1)} s: ${
        natsNodes === 1 ? 'one nats-server (R1)' : `${natsNodes} nats-server nodes (R3)`
      }, ${
        cluster ? `ClickHouse ${shards} x ${replicas} cluster + ZooKeeper` : 'one clickhouse-server'
      }, concept service, recorder`,
    );

    const stamp = Date.now();
    const runIds = Array.from({ length: runs }, (_, i) => `soak-${stamp}-${i}`);
    const acks: number[] = [];
    // end of checkpoint (the trainer hands it over) to its rows queryable in ClickHouse
    const probeStore = await openStore({
      kind: 'server',
      url: chUrl,
      user: 'default',
      password: '',
      database: DB,
      ...(cluster ? { cluster: LOCAL_CLICKHOUSE_CLUSTER } : {}),
    });
    const queryable: number[] = [];
    const pollings: Promise<void>[] = [];
    const queryableAfter = async (runId: string, step: number, t0: number): Promise<void> => {
      const sql = `SELECT count() AS n FROM checkpoints FINAL WHERE run_id = ${sqlString(runId)} AND step = ${step}`;
      const seen = await waitFor(
        async () => Number((await probeStore.query<{ n: string }>(sql))[0].n) > 0,
        120_000,
        50,
      );
      if (seen) queryable.push(performance.now() - t0);
    };
    const pidOf = (name: string): number | undefined => readPid(stackDir, name);
    const rssStart = { service: rssMiB(pidOf('concept-service')), recorder: rssMiB(pidOf('recorder')) };
    const sent = new Map<string, number>();
    const deadline = { at: 0 };
    const oneRun = async (runId: string): Promise<void> => {
      const client = createMonitorClient({ target: `127.0.0.1:${grpcPort}` });
      try {
        await client.startRun({
          runId,
          model: 'soak',
          paradigm: 'standard',
          bundleId: bundles.bundleId,
          layers: LAYERS,
          tags: { bench: 'soak' },
        });
        let step = 0;
        while (performance.now() < deadline.at) {
          const checkpoint = {
            step,
            layers: LAYERS.map((l) => plantedActivations(bundles.space, l.name, l.width, step)),
            metrics: { loss: 1 / (step + 1) },
          };
          const t0 = performance.now();
          const result = await client.sendCheckpoint(checkpoint);
          if (result === undefined) throw new Error(`run ${runId}: checkpoint ${step} was not acknowledged`);
          acks.push(performance.now() - t0);
          if (step % 10 === 0) pollings.push(queryableAfter(runId, step, t0));
          step++;
          sent.set(runId, step);
        }
        await client.endRun('completed');
      } finally {
        await client.close();
      }
    };
    // warm-up outside the clock: the service loads the bundle on the first run start
    const warm = createMonitorClient({ target: `127.0.0.1:${grpcPort}` });
    await warm.startRun({
      runId: `soak-${stamp}-warm`,
      model: 'soak',
      paradigm: 'standard',
      bundleId: bundles.bundleId,
      layers: LAYERS,
      tags: { bench: 'soak-warm-up' },
    });
    await warm.endRun('completed');
    await warm.close();

    const t0 = performance.now();
    deadline.at = t0 + seconds * 1000;
    await Promise.all(runIds.map(oneRun));
    const elapsedS = (performance.now() - t0) / 1000;
    const total = [...sent.values()].reduce((a, n) => a + n, 0);
    await Promise.all(pollings);
    await probeStore.close();
    const rssEnd = { service: rssMiB(pidOf('concept-service')), recorder: rssMiB(pidOf('recorder')) };

    const store = await openStore({
      kind: 'server',
      url: chUrl,
      user: 'default',
      password: '',
      database: DB,
      ...(cluster ? { cluster: LOCAL_CLICKHOUSE_CLUSTER } : {}),
    });
    const inRuns = `run_id IN (${runIds.map(sqlString).join(', ')})`;
    const count = async (sql: string): Promise<number> =>
      Number((await store.query<{ n: string }>(sql))[0].n);
    const tDrain = performance.now();
    const drained = await waitFor(
      async () =>
        (await count(`SELECT count() AS n FROM neuron_labels FINAL WHERE ${inRuns}`)) >= total * NEURONS,
      120_000,
      250,
    );
    const drainS = (performance.now() - tDrain) / 1000;
    const stored = {
      checkpoints: await count(`SELECT count() AS n FROM checkpoints FINAL WHERE ${inRuns}`),
      distinctCheckpoints: await count(
        `SELECT uniqExact(run_id, step) AS n FROM checkpoints WHERE ${inRuns}`,
      ),
      labels: await count(`SELECT count() AS n FROM neuron_labels FINAL WHERE ${inRuns}`),
      labelsRaw: await count(`SELECT count() AS n FROM neuron_labels WHERE ${inRuns}`),
    };
    await store.close();

    const sorted = [...acks].sort((a, b) => a - b);
    console.log(
      `soak: ${runs} concurrent runs for ${elapsedS.toFixed(1)} s, layers ${LAYERS.map((l) => l.width).join('/')} neurons, 120 probe images`,
    );
    console.log(
      `  throughput: ${(total / elapsedS).toFixed(1)} checkpoints/s, ${((total * NEURONS) / elapsedS).toFixed(0)} label rows/s (${total} checkpoints acked; per run ${[...sent.values()].join(', ')})`,
    );
    console.log(
      `  ack latency (sendCheckpoint -> dissected and in JetStream R${natsNodes === 1 ? 1 : 3}): p50 ${quantile(sorted, 0.5).toFixed(0)} ms, p95 ${quantile(sorted, 0.95).toFixed(0)} ms, max ${(sorted[sorted.length - 1] ?? NaN).toFixed(0)} ms`,
    );
    console.log(
      `  stored ${drained ? `(all in ${drainS.toFixed(1)} s after the last ack)` : '(NOT all within 120 s)'}: checkpoints ${stored.checkpoints} (distinct ${stored.distinctCheckpoints}) of ${total} acked; label rows ${stored.labels} of ${total * NEURONS} (${stored.labelsRaw} before FINAL de-duplication)`,
    );
    const exactlyOnce =
      stored.checkpoints === total &&
      stored.distinctCheckpoints === total &&
      stored.labels === total * NEURONS;
    const q = [...queryable].sort((a, b) => a - b);
    console.log(
      `  end of checkpoint to queryable (${q.length} sampled): p50 ${(quantile(q, 0.5) / 1000).toFixed(2)} s, p99 ${(quantile(q, 0.99) / 1000).toFixed(2)} s`,
    );
    console.log(
      `  RSS start -> end: concept service ${rssStart.service.toFixed(0)} -> ${rssEnd.service.toFixed(0)} MiB, recorder ${rssStart.recorder.toFixed(0)} -> ${rssEnd.recorder.toFixed(0)} MiB`,
    );
    console.log(`  every acked checkpoint stored exactly once: ${exactlyOnce ? 'yes' : 'NO'}`);
    if (!exactlyOnce) process.exitCode = 1;
    const lost = Math.max(0, total - stored.distinctCheckpoints);
    const duplicated = Math.max(0, stored.checkpoints - stored.distinctCheckpoints);
    summary = `soak: ${total} checkpoints, ${lost} lost, ${duplicated} duplicated, p99 ${(quantile(q, 0.99) / 1000).toFixed(2)} s`;
  } finally {
    const stopped = await stackDown(stackDir);
    console.log(`stopped by pid: ${stopped.join(', ')}`);
    // the last line, for scripts: what was sent, lost, duplicated, and the p99 to queryable; before
    // the temporary folder goes (gigabytes of ClickHouse parts and JetStream blocks after a long soak)
    if (summary) console.log(summary);
    bundles.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
