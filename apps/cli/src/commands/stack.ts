import type { Command } from 'commander';
import { CmError } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import {
  appServices,
  LOCAL_CLICKHOUSE_CLUSTER,
  recordedClickHouseLayout,
  recordedNatsNodes,
  stackDown,
  stackRestart,
  stackStatus,
  stackUp,
  type ClickHouseLayout,
  type StackOptions,
} from '@cm/stack';

/**
 * nats-server nodes: the --nats-cluster flag, else CM_STACK_NATS_NODES when set, else what this
 * stack was brought up with, else one.
 */
function natsNodesFor(config: CmConfig, flag?: number): number {
  if (flag !== undefined) return flag;
  if (process.env.CM_STACK_NATS_NODES) return config.stack.natsNodes;
  return recordedNatsNodes(resolvePath(config.stack.dir)) ?? 1;
}

/**
 * ClickHouse shards x replicas: the flags, else CM_STACK_CLICKHOUSE_SHARDS / _REPLICAS when set,
 * else what this stack was brought up with, else 1 x 1.
 */
function clickHouseLayoutFor(
  config: CmConfig,
  flags: { shards?: number; replicas?: number },
): ClickHouseLayout {
  const recorded = recordedClickHouseLayout(resolvePath(config.stack.dir));
  const pick = (flag: number | undefined, env: string, configured: number, rec?: number): number =>
    flag ?? (process.env[env] ? configured : (rec ?? 1));
  return {
    shards: pick(flags.shards, 'CM_STACK_CLICKHOUSE_SHARDS', config.stack.clickhouseShards, recorded?.shards),
    replicas: pick(
      flags.replicas,
      'CM_STACK_CLICKHOUSE_REPLICAS',
      config.stack.clickhouseReplicas,
      recorded?.replicas,
    ),
  };
}

interface UpFlags {
  serversOnly?: boolean;
  natsCluster?: number;
  clickhouseShards?: number;
  clickhouseReplicas?: number;
}

function stackOptions(config: CmConfig, flags: UpFlags = {}): StackOptions {
  const natsNodes = natsNodesFor(config, flags.natsCluster);
  const layout = clickHouseLayoutFor(config, {
    shards: flags.clickhouseShards,
    replicas: flags.clickhouseReplicas,
  });
  return {
    dir: resolvePath(config.stack.dir),
    natsPort: config.stack.natsPort,
    natsMonitorPort: config.stack.natsMonitorPort,
    natsNodes,
    natsRoutePort: config.stack.natsRoutePort,
    clickhouseHttpPort: config.stack.clickhouseHttpPort,
    clickhouseTcpPort: config.stack.clickhouseTcpPort,
    clickhouseShards: layout.shards,
    clickhouseReplicas: layout.replicas,
    clickhouseInterserverPort: config.stack.clickhouseInterserverPort,
    zookeeperPort: config.stack.zookeeperPort,
    apps: flags.serversOnly
      ? []
      : appServices({
          natsNodes,
          natsPort: config.stack.natsPort,
          clickhouseHttpPort: config.stack.clickhouseHttpPort,
          clickhouse: layout,
          bundleDir: resolvePath(config.bundles.dir),
          serviceHealthPort: config.service.healthPort,
          recorderHealthPort: config.recorder.healthPort,
        }),
  };
}

const print = (line: string): void => void process.stdout.write(line + '\n');

function layoutCount(flag: string, v: string, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new CmError('INVALID_ARGUMENT', `${flag} must be an integer from 1 to ${max}, got ${v}`);
  return n;
}

export function registerStack(program: Command): void {
  const stack = program
    .command('stack')
    .description(
      'start, check and stop the local service stack (nats-server, clickhouse-server, concept service, recorder)',
    );

  stack
    .command('up')
    .description(
      'start what is not running (or not healthy) in the background, keep what runs, wait until each is healthy',
    )
    .option('--servers-only', 'start only nats-server and clickhouse-server')
    .option(
      '--nats-cluster <nodes>',
      'a JetStream cluster of this many nats-server nodes (3 or more) on consecutive ports from CM_NATS_PORT, CM_NATS_MONITOR_PORT, CM_NATS_ROUTE_PORT; the stream at R3',
      (v: string) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 3)
          throw new CmError('INVALID_ARGUMENT', `--nats-cluster must be an integer of 3 or more, got ${v}`);
        return n;
      },
    )
    .option(
      '--clickhouse-shards <n>',
      `a ClickHouse cluster (\`${LOCAL_CLICKHOUSE_CLUSTER}\`, with ZooKeeper on CM_ZOOKEEPER_PORT) of this many shards; node k on consecutive ports from CM_CLICKHOUSE_HTTP_PORT, CM_CLICKHOUSE_TCP_PORT, CM_CLICKHOUSE_INTERSERVER_PORT`,
      (v: string) => layoutCount('--clickhouse-shards', v, 16),
    )
    .option(
      '--clickhouse-replicas <n>',
      'replicas of each ClickHouse shard (with --clickhouse-shards; either above 1 makes a cluster)',
      (v: string) => layoutCount('--clickhouse-replicas', v, 8),
    )
    .action(async (opts: UpFlags) => {
      const config = loadConfig();
      const entries = await stackUp(stackOptions(config, opts), print);
      const by = (a: string): string[] => entries.filter((e) => e.action === a).map((e) => e.name);
      const parts = [
        by('started').length ? `started ${by('started').join(', ')}` : '',
        by('restarted').length ? `restarted ${by('restarted').join(', ')}` : '',
        by('kept').length ? `kept ${by('kept').join(', ')}` : '',
      ].filter(Boolean);
      print(`stack up: ${parts.join('; ')} (state in ${config.stack.dir})`);
    });

  stack
    .command('restart <name>')
    .description(
      'restart one service of the stack (nats, clickhouse, concept-service, recorder; nats-N, zookeeper, clickhouse-sNrM in clusters); the others keep running',
    )
    .action(async (name: string) => {
      const config = loadConfig();
      const entry = await stackRestart(stackOptions(config), name, print);
      print(
        `${entry.name}: ${entry.action}, ${entry.healthy ? 'healthy' : 'not answering'} (pid ${entry.pid ?? '-'})`,
      );
    });

  stack
    .command('status')
    .description('show each service: pid, running, healthy')
    .action(async () => {
      const config = loadConfig();
      const statuses = await stackStatus(resolvePath(config.stack.dir));
      if (statuses.length === 0) {
        process.stdout.write('stack is down (nothing recorded; start it with `cm stack up`)\n');
        return;
      }
      for (const s of statuses) {
        const state = !s.running ? 'stopped' : s.healthy ? 'healthy' : 'running, not answering';
        process.stdout.write(
          `${s.name.padEnd(16)} ${String(s.pid ?? '-').padEnd(8)} ${state.padEnd(24)} ${s.health}\n`,
        );
      }
      if (statuses.some((s) => !s.healthy)) {
        throw new CmError('UNAVAILABLE', 'some services are not healthy', {
          hint: `see the logs in ${config.stack.dir}`,
        });
      }
    });

  stack
    .command('down')
    .description('stop every service started by `cm stack up`')
    .action(async () => {
      const config = loadConfig();
      const stopped = await stackDown(resolvePath(config.stack.dir));
      process.stdout.write(stopped.length ? `stopped: ${stopped.join(', ')}\n` : 'nothing was running\n');
    });
}
