import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, basename, join, resolve } from 'node:path';
import { CmError, errorMessage } from '@cm/core';
import type { Migration } from './schema';
import type { TableRows } from './rows';
import { emptyRows } from './rows';
import { describeTarget, type QueryColumns, type Store, type StoreTarget } from './store';
import type { BinaryFormat, StoreFeatures } from './version';
import { notAReadStatement, sqlString } from './sql';
import { TABLES } from '@cm/contracts';

/**
 * Reads while a run writes. chDB holds its data folder for one process, so while `cm demo` or
 * `cm train` writes the embedded store, no second process can open it. The writing process
 * therefore serves reads: a small HTTP endpoint on 127.0.0.1 (a free port) that runs read-only
 * statements on the store it already has open, advertised in `<store>.reader.json` next to the
 * folder (pid, port, a random token the endpoint requires; mode 0600, so only the user who runs the
 * writer can read it). `openRemoteReadStore` is a `Store` over that endpoint: query, queryColumns
 * and queryText work as on the folder itself; every write is refused with a clear CmError.
 *
 * Read-only is enforced by the endpoint, not trusted to the client: one statement, whose first
 * keyword is SELECT, WITH, SHOW, DESCRIBE/DESC, EXISTS or EXPLAIN (comments skipped). The
 * advertisement is removed when the endpoint closes and on process exit; one left by a process
 * that died (pid no longer alive) is ignored by `findReaderEndpoint`.
 */

/** What `<store>.reader.json` holds. */
export interface ReaderAdvert {
  pid: number;
  port: number;
  token: string;
  /** Who writes (for the reader's "store: ... (served by cm demo, pid 1234)" line). */
  writer: string;
  /** The store folder and database served. */
  path: string;
  database: string;
  startedAt: string;
}

export interface ReaderEndpoint {
  readonly port: number;
  readonly advertFile: string;
  close(): Promise<void>;
}

/** The advertisement file of a chDB folder: `<folder>.reader.json`, a sibling of the folder. */
export function readerAdvertFile(storePath: string): string {
  const full = resolve(storePath);
  return join(dirname(full), `${basename(full)}.reader.json`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The live endpoint advertised for a chDB folder, or undefined: no file, an unreadable one, or one
 * left by a process that is gone (stale: ignored).
 */
export function findReaderEndpoint(storePath: string): ReaderAdvert | undefined {
  const file = readerAdvertFile(storePath);
  if (!existsSync(file)) return undefined;
  let advert: ReaderAdvert;
  try {
    advert = JSON.parse(readFileSync(file, 'utf8')) as ReaderAdvert;
  } catch {
    return undefined; // half written or not ours: as if absent
  }
  if (!Number.isInteger(advert.pid) || !Number.isInteger(advert.port) || typeof advert.token !== 'string')
    return undefined;
  return isAlive(advert.pid) ? advert : undefined;
}

type QueryMode = 'rows' | 'columns' | 'text' | 'binary';
const BINARY_FORMATS = ['Parquet'] as const;
const TEXT_FORMATS = ['CSVWithNames', 'TabSeparatedWithNames', 'JSONEachRow'] as const;
type TextFormat = (typeof TEXT_FORMATS)[number];

interface QueryRequest {
  sql: string;
  mode: QueryMode;
  format?: TextFormat | BinaryFormat;
}

const MAX_REQUEST_BYTES = 1 << 20;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, e: CmError): void {
  sendJson(res, status, { error: { code: e.code, message: e.message, hint: e.hint, context: e.context } });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_REQUEST_BYTES) {
        reject(new CmError('RESOURCE_EXHAUSTED', `request over ${MAX_REQUEST_BYTES} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolveBody(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The request handler of the endpoint (exported for tests and for servers that mount it):
 * GET /info -> the store's database, version, features; POST /query {sql, mode, format?} -> rows,
 * columns or text. Every request needs `Authorization: Bearer <token>`.
 */
export function readerHandler(
  store: Store,
  token: string,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    if (!tokenMatches(req.headers.authorization, token)) {
      sendError(res, 401, new CmError('INVALID_ARGUMENT', 'missing or wrong reader token'));
      return;
    }
    try {
      if (req.method === 'GET' && req.url === '/info') {
        sendJson(res, 200, {
          database: store.database,
          serverVersion: store.serverVersion,
          features: store.features,
          target: describeTarget(store.target),
        });
        return;
      }
      if (req.method !== 'POST' || req.url !== '/query') {
        sendError(res, 404, new CmError('NOT_FOUND', `no route ${req.method} ${req.url}`));
        return;
      }
      let body: QueryRequest;
      try {
        body = JSON.parse(await readBody(req)) as QueryRequest;
      } catch (e) {
        throw e instanceof CmError ? e : new CmError('INVALID_ARGUMENT', 'the request is not JSON');
      }
      if (typeof body.sql !== 'string') throw new CmError('INVALID_ARGUMENT', 'sql missing');
      const refused = notAReadStatement(body.sql);
      if (refused)
        throw new CmError('INVALID_ARGUMENT', refused, {
          hint: 'the writing process serves reads only; write through the run itself',
        });
      if (body.mode === 'rows') sendJson(res, 200, { rows: await store.query(body.sql) });
      else if (body.mode === 'columns') sendJson(res, 200, await store.queryColumns(body.sql));
      else if (body.mode === 'text' && TEXT_FORMATS.includes(body.format as TextFormat)) {
        const text = await store.queryText(body.sql, body.format as TextFormat);
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(text);
      } else if (body.mode === 'binary' && BINARY_FORMATS.includes(body.format as BinaryFormat)) {
        const bytes = await store.queryBinary(body.sql, body.format as BinaryFormat);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
        res.end(bytes);
      } else throw new CmError('INVALID_ARGUMENT', `unknown mode ${String(body.mode)} or format`);
    } catch (e) {
      const err = e instanceof CmError ? e : new CmError('INTERNAL', errorMessage(e), { cause: e as Error });
      sendError(res, err.code === 'INVALID_ARGUMENT' || err.code === 'RESOURCE_EXHAUSTED' ? 400 : 500, err);
    }
  };
}

/**
 * Serve reads of `store` (an embedded chDB store this process writes) on 127.0.0.1, a free port,
 * and advertise the endpoint next to the folder. Close it before closing the store.
 */
export async function startReaderEndpoint(store: Store, opts: { writer: string }): Promise<ReaderEndpoint> {
  if (store.target.kind !== 'chdb')
    throw new CmError(
      'INTERNAL',
      'a reader endpoint serves an embedded (chDB) store; a server serves itself',
    );
  const token = randomBytes(24).toString('hex');
  const handler = readerHandler(store, token);
  const server: Server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  server.unref(); // never what keeps the writer alive
  const port = (server.address() as AddressInfo).port;
  const advertFile = readerAdvertFile(store.target.path);
  const advert: ReaderAdvert = {
    pid: process.pid,
    port,
    token,
    writer: opts.writer,
    path: store.target.path,
    database: store.database,
    startedAt: new Date().toISOString(),
  };
  writeFileSync(advertFile, JSON.stringify(advert, null, 2) + '\n', { mode: 0o600 });
  const removeAdvert = (): void => {
    // only our own file: a later writer may have replaced it
    if (findReaderEndpointRaw(advertFile)?.pid === process.pid) rmSync(advertFile, { force: true });
  };
  process.on('exit', removeAdvert);
  let closed = false;
  return {
    port,
    advertFile,
    async close() {
      if (closed) return;
      closed = true;
      process.off('exit', removeAdvert);
      removeAdvert();
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

function findReaderEndpointRaw(file: string): ReaderAdvert | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ReaderAdvert;
  } catch {
    return undefined;
  }
}

function readOnly(action: string, advert: ReaderAdvert): CmError {
  return new CmError(
    'INVALID_ARGUMENT',
    `${action} refused: ${advert.path} is read through ${advert.writer} (pid ${advert.pid}), which holds it for writing`,
    {
      context: { store: advert.path, writer: advert.writer, pid: advert.pid },
      hint: 'reading commands only read; write after the run ends, or through a ClickHouse server',
    },
  );
}

/** A read-only `Store` over a writer's reader endpoint. */
export async function openRemoteReadStore(advert: ReaderAdvert): Promise<Store> {
  const base = `http://127.0.0.1:${advert.port}`;
  const headers = { authorization: `Bearer ${advert.token}` };
  const request = async (path: string, init?: { body: unknown }): Promise<Response> => {
    let res: Response;
    try {
      res = await fetch(base + path, {
        method: init ? 'POST' : 'GET',
        headers: init ? { ...headers, 'content-type': 'application/json' } : headers,
        body: init ? JSON.stringify(init.body) : undefined,
      });
    } catch (e) {
      throw new CmError(
        'UNAVAILABLE',
        `${advert.writer} (pid ${advert.pid}) serving ${advert.path} did not answer: ${errorMessage(e)}`,
        {
          context: { port: advert.port, pid: advert.pid },
          cause: e as Error,
          hint: 'did the run just end? try again',
        },
      );
    }
    if (!res.ok) {
      const body = (await res.json().catch(() => ({}))) as {
        error?: {
          code?: CmError['code'];
          message?: string;
          hint?: string;
          context?: Record<string, unknown>;
        };
      };
      throw new CmError(
        body.error?.code ?? 'INTERNAL',
        body.error?.message ?? `reader endpoint: HTTP ${res.status}`,
        {
          hint: body.error?.hint,
          context: body.error?.context,
        },
      );
    }
    return res;
  };
  const info = (await (await request('/info')).json()) as {
    database: string;
    serverVersion: string;
    features: StoreFeatures;
  };
  const target: StoreTarget = { kind: 'chdb', path: advert.path, database: info.database };
  const refuse = (action: string) => (): Promise<never> => Promise.reject(readOnly(action, advert));
  return {
    target,
    database: info.database,
    serverVersion: info.serverVersion,
    features: info.features,
    labelFormat: 'TabSeparated',
    newRows: (): TableRows => emptyRows('TabSeparated'),
    migrate: refuse('migrate') as (m?: readonly Migration[]) => Promise<number[]>,
    appliedMigrations: async () => {
      const rows = (await (
        await request('/query', {
          body: {
            sql: `SELECT DISTINCT version FROM schema_migrations FINAL ORDER BY version`,
            mode: 'rows',
          },
        })
      ).json()) as { rows: { version: number | string }[] };
      return rows.rows.map((r) => Number(r.version));
    },
    missingTables: async () => {
      const rows = (await (
        await request('/query', {
          body: {
            sql: `SELECT name FROM system.tables WHERE database = ${sqlString(info.database)}`,
            mode: 'rows',
          },
        })
      ).json()) as { rows: { name: string }[] };
      const present = new Set(rows.rows.map((r) => r.name));
      return Object.values(TABLES).filter((t) => !present.has(t));
    },
    insertRecords: refuse('insert'),
    insertRows: refuse('insert'),
    execute: refuse('execute a statement'),
    insertConcepts: refuse('insert'),
    async query<T>(sql: string): Promise<T[]> {
      return ((await (await request('/query', { body: { sql, mode: 'rows' } })).json()) as { rows: T[] })
        .rows;
    },
    async queryColumns(sql: string): Promise<QueryColumns> {
      return (await (await request('/query', { body: { sql, mode: 'columns' } })).json()) as QueryColumns;
    },
    async queryText(sql, format): Promise<string> {
      return (await request('/query', { body: { sql, mode: 'text', format } })).text();
    },
    async queryBinary(sql, format): Promise<Buffer> {
      return Buffer.from(
        await (await request('/query', { body: { sql, mode: 'binary', format } })).arrayBuffer(),
      );
    },
    close: async () => undefined,
  };
}
