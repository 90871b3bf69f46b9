/**
 * What the server tests share: a concept server on a free loopback port, and a monitor client
 * pointed at it. Real gRPC, no doubles.
 */
import { createLogger } from '@cm/core';
import { createMonitorClient, type MonitorClient, type MonitorClientOptions } from '@cm/monitor-client';
import { createConceptServer, type ConceptServer, type ConceptServerOptions } from '../src';

export interface ListeningServer {
  server: ConceptServer;
  port: number;
}

/** A concept server (logging as test-service) listening on a free port of 127.0.0.1. */
export async function listenForTest(options: Omit<ConceptServerOptions, 'log'>): Promise<ListeningServer> {
  const server = createConceptServer({ ...options, log: createLogger('test-service') });
  return { server, port: await server.listen('127.0.0.1:0') };
}

export interface TestService extends ListeningServer {
  client: MonitorClient;
  /** Close the client, then stop the server (2 s grace). */
  close(): Promise<void>;
}

/** {@link listenForTest} and a monitor client for it (`client` options besides the target). */
export async function startTestService(
  options: Omit<ConceptServerOptions, 'log'>,
  client: Omit<MonitorClientOptions, 'target'> = {},
): Promise<TestService> {
  const listening = await listenForTest(options);
  const monitor = createMonitorClient({ ...client, target: `127.0.0.1:${listening.port}` });
  return {
    ...listening,
    client: monitor,
    close: async () => {
      await monitor.close();
      await listening.server.stop(2000);
    },
  };
}
