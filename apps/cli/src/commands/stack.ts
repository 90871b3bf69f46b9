import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CmError } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import { stackDown, stackStatus, stackUp, type AppService } from '@cm/stack';

const ROOT = join(__dirname, '..', '..', '..', '..');

/** The project's own services, started after nats-server and clickhouse-server, with their environment. */
function appServices(config: CmConfig): AppService[] {
  const env = {
    ...process.env,
    CM_NATS_URL: `nats://127.0.0.1:${config.stack.natsPort}`,
    CM_CLICKHOUSE_URL: `http://127.0.0.1:${config.stack.clickhouseHttpPort}`,
    CM_BUNDLE_DIR: resolvePath(config.bundles.dir),
  };
  const apps: AppService[] = [
    {
      name: 'concept-service',
      entry: join(ROOT, 'apps/concept-service/src/main.ts'),
      env,
      healthPort: config.service.healthPort,
    },
    {
      name: 'recorder',
      entry: join(ROOT, 'apps/recorder/src/main.ts'),
      env,
      healthPort: config.recorder.healthPort,
    },
  ];
  return apps.filter((a) => existsSync(a.entry));
}

export function registerStack(program: Command): void {
  const stack = program
    .command('stack')
    .description(
      'start, check and stop the local service stack (nats-server, clickhouse-server, concept service, recorder)',
    );

  stack
    .command('up')
    .description('start every service in the background and wait until each is healthy')
    .option('--servers-only', 'start only nats-server and clickhouse-server')
    .action(async (opts: { serversOnly?: boolean }) => {
      const config = loadConfig();
      const statuses = await stackUp(
        {
          dir: resolvePath(config.stack.dir),
          natsPort: config.stack.natsPort,
          natsMonitorPort: config.stack.natsMonitorPort,
          clickhouseHttpPort: config.stack.clickhouseHttpPort,
          clickhouseTcpPort: config.stack.clickhouseTcpPort,
          apps: opts.serversOnly ? [] : appServices(config),
        },
        (line) => process.stdout.write(line + '\n'),
      );
      process.stdout.write(
        `stack up: ${statuses.map((s) => s.name).join(', ')} (state in ${config.stack.dir})\n`,
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
