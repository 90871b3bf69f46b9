import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { startClickHouse, type ManagedServer } from '@cm/stack';
import { openStore, type Store } from '@cm/store';

/** The stores panel SQL must run on: embedded chDB (current ClickHouse) and clickhouse-server 18.16. */
export interface TestStores {
  stores: { name: string; store: Store }[];
  close(): Promise<void>;
}

export async function openTestStores(database = 'cm_dash_test'): Promise<TestStores> {
  const dir = mkdtempSync(join(tmpdir(), 'cm-dashboards-'));
  const stores: { name: string; store: Store }[] = [];
  let server: ManagedServer | undefined;
  try {
    stores.push({
      name: 'chdb',
      store: await openStore({ kind: 'chdb', path: join(dir, 'chdb'), database }),
    });
    server = await startClickHouse({
      dir: join(dir, 'stack'),
      httpPort: await freePort(),
      tcpPort: await freePort(),
    });
    stores.push({
      name: 'clickhouse-server',
      store: await openStore({ kind: 'server', url: server.url, user: 'default', password: '', database }),
    });
    for (const { store } of stores) await store.migrate();
  } catch (e) {
    for (const { store } of stores) await store.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    stores,
    async close() {
      for (const { store } of stores) await store.close();
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
