import { CmError, createLogger, setLogLevel } from '@cm/core';
import type { CmRecord } from '@cm/contracts';
import { ConceptEngine, type LayerDissector, type RecordSink } from '@cm/engine';
import { argmaxDissector, makeTestBundles, type TestBundles } from '@cm/engine/src/testing';
import { createConceptServer, type ConceptServer, type ConceptServerOptions } from '@cm/concept-server';

setLogLevel((process.env.CM_LOG_LEVEL as 'info' | undefined) ?? 'warn');

/** A sink that keeps records and can be told to fail (a NATS outage) for the next writes. */
export class FlakySink implements RecordSink {
  readonly records: CmRecord[] = [];
  failNext = 0;
  writes = 0;
  async write(records: CmRecord[]): Promise<void> {
    this.writes++;
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('nats: timeout waiting for PubAck');
    }
    this.records.push(...records);
  }
}

export interface TestService {
  server: ConceptServer;
  port: number;
  target: string;
  sink: FlakySink;
  engine: ConceptEngine;
  bundles: TestBundles;
  stop(): Promise<void>;
}

export async function startTestService(
  opts: {
    dissector?: LayerDissector;
    bundles?: TestBundles;
    sink?: FlakySink;
    engine?: ConceptEngine;
    listenAddress?: string;
  } & Partial<ConceptServerOptions> = {},
): Promise<TestService> {
  const bundles = opts.bundles ?? (await makeTestBundles());
  const sink = opts.sink ?? new FlakySink();
  const engine =
    opts.engine ??
    new ConceptEngine({ bundles: bundles.bundles, dissector: opts.dissector ?? argmaxDissector() });
  const server = createConceptServer({ log: createLogger('test-service'), ...opts, engine, sink });
  const port = await server.listen(opts.listenAddress ?? '127.0.0.1:0');
  return {
    server,
    port,
    target: `127.0.0.1:${port}`,
    sink,
    engine,
    bundles,
    stop: async () => {
      await server.stop(2000);
      if (!opts.bundles) bundles.cleanup();
    },
  };
}

export function labelRowsOf(records: CmRecord[]): string[] {
  const out: string[] = [];
  for (const r of records)
    if (r.kind === 'labels')
      for (const l of r.labels) out.push(`${r.runId}|${r.layer}|${r.step}|${l.neuron}`);
  return out;
}

export function isCm(code: CmError['code']): (e: unknown) => boolean {
  return (e: unknown) => e instanceof CmError && e.code === code;
}
