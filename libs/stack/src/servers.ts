import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CmError } from '@cm/core';
import { httpOk, startService, stopService, type RunningService } from './process';

/** nats-server and clickhouse-server as local processes: their config files and health checks. */

export interface NatsOptions {
  dir: string;
  port: number;
  monitorPort: number;
  user?: string;
  password?: string;
}

export interface ClickHouseOptions {
  dir: string;
  httpPort: number;
  tcpPort: number;
}

export interface ManagedServer extends RunningService {
  url: string;
  stop(): Promise<void>;
}

function findBinary(name: string, candidates: string[]): string {
  for (const c of candidates) {
    try {
      execFileSync(c, ['--help'], { stdio: 'ignore', timeout: 5000 });
      return c;
    } catch (e) {
      // clickhouse-server --help exits non-zero but exists; treat "exists" as found
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return c;
    }
  }
  throw new CmError('NOT_FOUND', `${name} is not installed`, {
    context: { tried: candidates },
    hint: 'install it with `bash tools/stack/install.sh` (Debian/Ubuntu, apt)',
  });
}

export const NATS_SERVICE = 'nats';
export const CLICKHOUSE_SERVICE = 'clickhouse';

export async function startNats(opts: NatsOptions): Promise<ManagedServer> {
  const bin = findBinary('nats-server', ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server']);
  const dir = resolve(opts.dir);
  const storeDir = join(dir, 'nats-data');
  mkdirSync(storeDir, { recursive: true });
  const args = [
    '-a',
    '127.0.0.1',
    '-p',
    String(opts.port),
    '-m',
    String(opts.monitorPort),
    '-js',
    '-sd',
    storeDir,
  ];
  if (opts.user) args.push('--user', opts.user, '--pass', opts.password ?? '');
  const svc = await startService(dir, {
    name: NATS_SERVICE,
    command: bin,
    args,
    health: () => httpOk(`http://127.0.0.1:${opts.monitorPort}/healthz?js-enabled-only=true`),
  });
  return {
    ...svc,
    url: `nats://127.0.0.1:${opts.port}`,
    stop: async () => void (await stopService(dir, NATS_SERVICE)),
  };
}

/**
 * clickhouse-server's config. Written for 18.16 (Debian's package; `<yandex>` root, which current
 * servers still accept) so one file serves every version we start locally.
 */
export function clickHouseConfigXml(dir: string, httpPort: number, tcpPort: number): string {
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/logs/server.log</log><errorlog>${dir}/logs/error.log</errorlog><size>10M</size><count>2</count></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage><load_balancing>random</load_balancing></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;

export async function startClickHouse(opts: ClickHouseOptions): Promise<ManagedServer> {
  const bin = findBinary('clickhouse-server', [
    'clickhouse-server',
    '/usr/sbin/clickhouse-server',
    '/usr/bin/clickhouse-server',
  ]);
  const dir = resolve(opts.dir, 'clickhouse');
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas', 'logs'])
    mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, 'config.xml'), clickHouseConfigXml(dir, opts.httpPort, opts.tcpPort));
  writeFileSync(join(dir, 'users.xml'), USERS_XML);
  const stackDir = resolve(opts.dir);
  const svc = await startService(stackDir, {
    name: CLICKHOUSE_SERVICE,
    command: bin,
    args: [`--config-file=${join(dir, 'config.xml')}`],
    cwd: dir,
    health: () => httpOk(`http://127.0.0.1:${opts.httpPort}/ping`, (b) => b.startsWith('Ok')),
    startTimeoutMs: 60_000,
  });
  return {
    ...svc,
    url: `http://127.0.0.1:${opts.httpPort}`,
    stop: async () => void (await stopService(stackDir, CLICKHOUSE_SERVICE)),
  };
}
