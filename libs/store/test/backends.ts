import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import type { StoreTarget } from '../src';

/** The two real engines a store suite runs on, for `describe.each`: name and a target maker. */
export type Backends = [string, () => Promise<StoreTarget>][];

/**
 * clickhouse-server 18.16 (apt, a real process on free 127.0.0.1 ports, started when its suite
 * asks) and embedded chDB (ClickHouse 26), both in one temporary folder that an `afterAll`
 * registered here removes after stopping the server by its pid. Call at a test file's top level;
 * `server()` is the running clickhouse-server once its suite has started it (for later suites).
 */
export function realBackends(
  prefix: string,
  database: string,
): { dir: string; backends: Backends; server: () => ManagedServer | undefined } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let server: ManagedServer | undefined;
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const backends: Backends = [
    [
      'clickhouse-server 18.16',
      async () => {
        server = await startClickHouse({
          dir: join(dir, 'server'),
          httpPort: await freePort(),
          tcpPort: await freePort(),
        });
        return { kind: 'server', url: server.url, user: 'default', password: '', database };
      },
    ],
    ['chDB', async () => ({ kind: 'chdb', path: join(dir, 'chdb'), database })],
  ];
  return { dir, backends, server: () => server };
}
