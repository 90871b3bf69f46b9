/**
 * Fault injection (issue 13): a monitored training run against the local stack while each part is
 * killed or frozen in turn, and per fault what the trainer sent, what was acknowledged, what is
 * stored and what is stored twice.
 *
 *   npm run chaos                         (the four faults below; about 4 minutes)
 *   npm run chaos -- --only clickhouse    (one of recorder, concept-service, nats, clickhouse)
 *
 * The stack is the one `cm stack up` starts (libs/stack stackUp: nats-server, clickhouse-server,
 * the concept service and the recorder as their own processes, on free 127.0.0.1 ports, in a
 * temporary folder). The trainer streams a checkpoint every 250 ms through libs/monitor-client with
 * the default delivery policy of `cm train` (spool). Faults, each in its own run:
 *   recorder        SIGKILL, started again 10 s later (`stackUp` mends it)
 *   concept-service SIGKILL, started again 10 s later
 *   nats            SIGSTOP for 20 s (frozen: the connection stays open), then SIGCONT
 *   clickhouse      SIGSTOP for 60 s, then SIGCONT
 * Stored counts read the store with FINAL (exactly once) and without (what ClickHouse holds before
 * merging redeliveries). Everything is stopped by pid at the end; loopback only, bounded in time.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, setLogLevel, waitFor } from '@cm/core';
import { makeTestBundles, plantedActivations } from '@cm/engine/src/testing';
import { createMonitorClient } from '@cm/monitor-client';
import { appServices, readPid, stackDown, stackUp, type StackOptions } from '@cm/stack';
import { openStore, sqlString, type Store } from '@cm/store';

const DB = 'cm_chaos';
const LAYERS = [
  { name: 'fc1', width: 32, kind: 'dense' as const },
  { name: 'fc2', width: 64, kind: 'dense' as const },
];
const NEURONS = LAYERS.reduce((a, l) => a + l.width, 0);
const CHECKPOINT_EVERY_MS = 250;

interface Fault {
  name: 'recorder' | 'concept-service' | 'nats' | 'clickhouse';
  what: string;
  /** Seconds of training before the fault, of outage, and after the part is back. */
  before: number;
  outage: number;
  after: number;
  signal: 'SIGKILL' | 'SIGSTOP';
}

const FAULTS: Fault[] = [
  {
    name: 'recorder',
    what: 'SIGKILL, restarted after 10 s',
    before: 5,
    outage: 10,
    after: 10,
    signal: 'SIGKILL',
  },
  {
    name: 'concept-service',
    what: 'SIGKILL, restarted after 10 s',
    before: 5,
    outage: 10,
    after: 10,
    signal: 'SIGKILL',
  },
  { name: 'nats', what: 'frozen (SIGSTOP) for 20 s', before: 5, outage: 20, after: 10, signal: 'SIGSTOP' },
  {
    name: 'clickhouse',
    what: 'frozen (SIGSTOP) for 60 s',
    before: 5,
    outage: 60,
    after: 10,
    signal: 'SIGSTOP',
  },
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A run's checkpoints in the store: distinct steps, rows read with FINAL, raw rows; label rows with FINAL. */
async function counts(
  store: Store,
  runId: string,
): Promise<{ stored: number; final: number; raw: number; labels: number }> {
  const one = async (sql: string): Promise<number> => Number((await store.query<{ n: string }>(sql))[0].n);
  const where = `run_id = ${sqlString(runId)}`;
  return {
    stored: await one(`SELECT uniqExact(step) AS n FROM checkpoints WHERE ${where}`),
    final: await one(`SELECT count() AS n FROM checkpoints FINAL WHERE ${where}`),
    raw: await one(`SELECT count() AS n FROM checkpoints WHERE ${where}`),
    labels: await one(`SELECT count() AS n FROM neuron_labels FINAL WHERE ${where}`),
  };
}

async function main(): Promise<void> {
  setLogLevel('error');
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const faults = values.only ? FAULTS.filter((f) => f.name === values.only) : FAULTS;
  if (faults.length === 0) throw new Error(`--only must be one of ${FAULTS.map((f) => f.name).join(', ')}`);

  const dir = mkdtempSync(join(tmpdir(), 'cm-chaos-'));
  const bundles = await makeTestBundles(120, 11);
  const grpcPort = await freePort();
  const ports = {
    natsPort: await freePort(),
    natsMonitorPort: await freePort(),
    clickhouseHttpPort: await freePort(),
    clickhouseTcpPort: await freePort(),
  };
  // what `cm stack up` gives the services (libs/stack appServices), on this bench's ports
  const apps = appServices({
    natsNodes: 1,
    natsPort: ports.natsPort,
    clickhouseHttpPort: ports.clickhouseHttpPort,
    clickhouse: { shards: 1, replicas: 1 },
    bundleDir: bundles.root,
    serviceHealthPort: await freePort(),
    recorderHealthPort: await freePort(),
    extraEnv: {
      CM_LOG_LEVEL: 'error',
      CM_CLICKHOUSE_DATABASE: DB,
      CM_GRPC_LISTEN: `127.0.0.1:${grpcPort}`,
      CM_HOME: dir,
    },
  });
  const stackDir = join(dir, 'stack');
  mkdirSync(stackDir);
  const options: StackOptions = { dir: stackDir, ...ports, apps };
  const lines: string[] = [];
  try {
    await stackUp(options);
    const store = await openStore({
      kind: 'server',
      url: `http://127.0.0.1:${ports.clickhouseHttpPort}`,
      user: 'default',
      password: '',
      database: DB,
    });
    await store.migrate();
    console.log(`chaos: stack up in ${stackDir}; a checkpoint every ${CHECKPOINT_EVERY_MS} ms, policy spool`);
    for (const fault of faults) {
      const runId = `chaos-${fault.name}-${Date.now()}`;
      const client = createMonitorClient({
        target: `127.0.0.1:${grpcPort}`,
        policy: 'spool',
        spoolDir: join(dir, 'spool'),
        reconnect: { initialDelayMs: 100, maxDelayMs: 1000 },
        maxBlockMs: 120_000,
      });
      await client.startRun({
        runId,
        model: 'chaos',
        paradigm: 'standard',
        bundleId: bundles.bundleId,
        layers: LAYERS,
        tags: { bench: 'chaos', fault: fault.name },
      });
      const total = fault.before + fault.outage + fault.after;
      const t0 = Date.now();
      let sent = 0;
      let injected = false;
      let recovered = false;
      const pending: Promise<unknown>[] = [];
      while (Date.now() - t0 < total * 1000) {
        const elapsed = (Date.now() - t0) / 1000;
        if (!injected && elapsed >= fault.before) {
          injected = true;
          const pid = readPid(stackDir, fault.name);
          if (pid === undefined) throw new Error(`no pid recorded for ${fault.name}`);
          process.kill(pid, fault.signal);
          console.log(`  ${fault.name}: ${fault.signal} (pid ${pid}) at ${elapsed.toFixed(1)} s`);
        }
        if (injected && !recovered && elapsed >= fault.before + fault.outage) {
          recovered = true;
          if (fault.signal === 'SIGSTOP') process.kill(readPid(stackDir, fault.name)!, 'SIGCONT');
          else await stackUp(options); // starts the dead part alone, keeps the others
          console.log(`  ${fault.name}: back at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        }
        const step = sent;
        const checkpoint = {
          step,
          layers: LAYERS.map((l) => plantedActivations(bundles.space, l.name, l.width, step)),
          metrics: { loss: 1 / (step + 1) },
        };
        // a training loop does not wait for the monitor: under spool, sendCheckpoint returns at once
        // when the service is down; otherwise it resolves on the ack
        pending.push(client.sendCheckpoint(checkpoint).catch((e: unknown) => e));
        sent++;
        await sleep(CHECKPOINT_EVERY_MS);
      }
      await Promise.all(pending);
      await client.endRun('completed');
      const stats = client.stats();
      await client.close();
      // the recorder catches up on what JetStream kept meanwhile
      await waitFor(async () => (await counts(store, runId)).stored >= sent, 90_000, 500);
      const c = await counts(store, runId);
      const line =
        `${fault.name.padEnd(16)} ${fault.what.padEnd(30)} sent ${sent}, acked ${stats.acknowledgedCheckpoints}` +
        ` (${stats.spooledCheckpoints} through the spool), dropped ${stats.droppedCheckpoints}, stored ${c.stored}` +
        `, lost ${sent - c.stored}, duplicated ${c.final - c.stored} (raw copies merged by FINAL: ${c.raw - c.stored})` +
        `, label rows ${c.labels} of ${c.stored * NEURONS}`;
      lines.push(line);
      console.log(`  ${line}`);
    }
    await store.close();
  } finally {
    await stackDown(stackDir);
    bundles.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log('chaos: per fault');
  for (const l of lines) console.log(`  ${l}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
