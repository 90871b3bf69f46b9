/**
 * A real nats-server (JetStream) for a test file or describe block, with a bus connected to it:
 * started before its tests, stopped and its folder removed after them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { startNats, type ManagedServer } from '@cm/stack';
import { connectBus, type Bus } from '../src';

export interface NatsBus {
  server: ManagedServer;
  bus: Bus;
}

/** The server and bus are filled in by the block's beforeAll: read them inside tests only. */
export function useNatsBus(dirPrefix: string): NatsBus {
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  const nats = {} as Partial<NatsBus>;
  beforeAll(async () => {
    nats.server = await startNats({ dir, port: await freePort(), monitorPort: await freePort() });
    nats.bus = await connectBus({ url: nats.server.url });
  }, 60_000);
  afterAll(async () => {
    await nats.bus?.close();
    await nats.server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return nats as NatsBus;
}
