/**
 * The receiving side of bench:stream, in its own process as in a deployment (a trainer and the
 * service never share an event loop): the concept server with real pooling and dissection and a
 * sink that discards records. Prints `port <n>` and one JSON line per checkpoint on stdout.
 */
import { createLogger, setLogLevel } from '@cm/core';
import { DissectPool } from '@cm/dissect';
import { ConceptEngine } from '@cm/engine';
import { createConceptServer } from '@cm/concept-server';
import { randomSpace } from './random-space';

async function main(): Promise<void> {
  setLogLevel('error');
  const d = Number(process.argv[2] ?? 2000);
  const space = randomSpace(d, 200, 32, 1);
  const pool = new DissectPool({ workers: 1 });
  const engine = new ConceptEngine({ bundles: { get: (id) => ({ id, space }) }, dissector: pool });
  const server = createConceptServer({
    engine,
    sink: { write: async () => undefined },
    log: createLogger('bench-server'),
    onCheckpoint: (i) => process.stdout.write(`${JSON.stringify(i)}\n`),
  });
  const port = await server.listen('127.0.0.1:0');
  process.stdout.write(`port ${port}\n`);
  process.on(
    'SIGTERM',
    () =>
      void server
        .stop(500)
        .then(() => pool.close())
        .then(() => process.exit(0)),
  );
}

void main();
