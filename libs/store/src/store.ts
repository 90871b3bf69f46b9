import { mkdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { resolve } from 'node:path';
import { createClient, ClickHouseLogLevel, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { TABLES, type CmRecord } from '@cm/contracts';
import { CmError, errorMessage } from '@cm/core';
import { MIGRATIONS, MIGRATIONS_TABLE_DDL, qualified, type GuardedStatement, type Migration } from './schema';
import { clusterStatements, clusterTableNames, LOCAL_SUFFIX } from './cluster';
import {
  emptyRows,
  INSERT_FORMAT,
  NEURON_LABEL_COLUMNS,
  TABLE_KEYS,
  TABLE_OF,
  appendRows,
  type LabelFormat,
  type TableKey,
  type TableRows,
} from './rows';
import { notAReadStatement, sqlIdentifier, sqlString } from './sql';
import { featuresFor, parseServerVersion, type BinaryFormat, type StoreFeatures } from './version';

/** The table a schema statement creates (`CREATE TABLE IF NOT EXISTS `db`.`t``). */
const CREATES_TABLE = /^CREATE TABLE IF NOT EXISTS `[A-Za-z0-9_]+`\.`([A-Za-z0-9_]+)`/;

/** Where the store lives: a ClickHouse server over HTTP, or an embedded chDB data folder. */
export type StoreTarget =
  | {
      kind: 'server';
      url: string;
      user: string;
      password: string;
      database: string;
      /** Cluster mode (CM_CLICKHOUSE_CLUSTER): the remote_servers cluster the tables span. */
      cluster?: string;
    }
  | { kind: 'chdb'; path: string; database: string };

export interface ConceptEntry {
  concept: string;
  category: string;
}

export interface QueryColumns {
  columns: { name: string; type: string }[];
  rows: unknown[][];
}

/**
 * `readOnly`: refuse anything but a read (notAReadStatement), and on a server also run the query
 * with readonly = 2 (writes and DDL refused by the server itself; 2 rather than 1 so that the
 * client may still pass its own settings).
 */
export interface ReadOptions {
  readOnly?: boolean;
}

export interface Store {
  readonly target: StoreTarget;
  readonly database: string;
  /** `SELECT version()` of the server or of the embedded engine. */
  readonly serverVersion: string;
  readonly features: StoreFeatures;
  /** How this store's inserts carry neuron label rows: RowBinary on a server, TabSeparated on chDB. */
  readonly labelFormat: LabelFormat;
  /** An empty batch to fill with appendRows, in this store's label format. */
  newRows(): TableRows;
  /** Apply the migrations not yet recorded in TABLES.migrations; returns the versions applied now. */
  migrate(migrations?: readonly Migration[]): Promise<number[]>;
  /** Versions recorded in TABLES.migrations, ascending. */
  appliedMigrations(): Promise<number[]>;
  /** Tables of the schema the database lacks (migrate recreates them). */
  missingTables(): Promise<string[]>;
  /** Insert records (one insert per table); safe to repeat: rows are keyed by the record's natural key. */
  insertRecords(records: CmRecord[]): Promise<void>;
  /** Insert rows already converted with appendRows into newRows() (the recorder validates per message). */
  insertRows(rows: TableRows): Promise<void>;
  /** Add concepts of a probe bundle to the concept dictionary (idempotent). */
  insertConcepts(bundleId: string, concepts: ConceptEntry[]): Promise<void>;
  /** Run a SELECT; rows as objects (JSONEachRow). The store's database is the default one. */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** Run a SELECT; column names/types and rows as arrays (keeps column order for tables and CSV). */
  queryColumns(sql: string, options?: ReadOptions): Promise<QueryColumns>;
  /** Run a SELECT and return ClickHouse's own rendering (CSVWithNames, TabSeparatedWithNames...). */
  queryText(
    sql: string,
    format: 'CSVWithNames' | 'TabSeparatedWithNames' | 'JSONEachRow',
    options?: ReadOptions,
  ): Promise<string>;
  /**
   * Run a SELECT and return ClickHouse's binary rendering (Parquet: `cm export`), bytes untouched.
   * Only where `binaryFormatsFor(serverVersion)` has the format: 18.16 has no Parquet.
   */
  queryBinary(sql: string, format: BinaryFormat, options?: ReadOptions): Promise<Buffer>;
  /** Run a statement that returns no rows (DDL, ALTER, INSERT ... SELECT): `cm sql --write`. */
  execute(sql: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * The CLI's `--store` value: `http://` or `https://` -> server (user, password and `?database=` may be
 * in the URL, else the defaults), anything else -> a chDB data folder.
 */
export function storeTargetFromString(
  value: string,
  defaults: { user?: string; password?: string; database: string; cluster?: string },
): StoreTarget {
  if (/^https?:\/\//i.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new CmError('INVALID_ARGUMENT', `not a valid ClickHouse URL: ${value}`, { context: { value } });
    }
    const database = url.searchParams.get('database') || defaults.database;
    const user = decodeURIComponent(url.username) || defaults.user || 'default';
    const password = decodeURIComponent(url.password) || defaults.password || '';
    const clean = `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;
    const cluster = url.searchParams.get('cluster') || defaults.cluster || undefined;
    return { kind: 'server', url: clean, user, password, database, ...(cluster ? { cluster } : {}) };
  }
  return { kind: 'chdb', path: resolve(value), database: defaults.database };
}

/** A short description without secrets, for logs and errors. */
export function describeTarget(target: StoreTarget): string {
  return target.kind === 'server'
    ? `clickhouse ${target.url} (database ${target.database})`
    : `chdb ${target.path} (database ${target.database})`;
}

function storeError(target: StoreTarget, action: string, e: unknown, sql?: string): CmError {
  if (e instanceof CmError) return e;
  // ClickHouseError carries the server's numeric code: the server understood us and refused
  // (clickhouse-js parses it from current servers; 18.16 words it "Code: 60, e.displayText() = ...")
  const parsed = (e as { code?: unknown })?.code;
  const legacy = /^Code: (\d+)/.exec(errorMessage(e));
  const serverCode = typeof parsed === 'string' && /^\d+$/.test(parsed) ? parsed : legacy?.[1];
  const refused = serverCode !== undefined;
  return new CmError(
    refused ? 'INVALID_ARGUMENT' : 'UNAVAILABLE',
    `${action} failed on ${describeTarget(target)}: ${errorMessage(e)}`,
    {
      context: {
        store: describeTarget(target),
        ...(sql ? { sql: sql.slice(0, 500) } : {}),
        ...(refused ? { clickhouseCode: serverCode } : {}),
      },
      cause: e,
      hint: refused
        ? undefined
        : target.kind === 'server'
          ? 'is clickhouse-server running? (`cm stack up`, CM_CLICKHOUSE_URL)'
          : undefined,
    },
  );
}

function makeClient(target: StoreTarget, database?: string): ClickHouseClient {
  const log = { level: ClickHouseLogLevel.OFF };
  if (target.kind === 'server') {
    return createClient({
      url: target.url,
      username: target.user,
      password: target.password,
      database,
      request_timeout: 120_000,
      // below the server's keep_alive_timeout (3 s on 18.16): never reuse a socket the server is closing
      keep_alive: { enabled: true, idle_socket_ttl: 1000 },
      log,
    });
  }
  mkdirSync(target.path, { recursive: true });
  // chdb/connection implements @clickhouse/client's Connection contract in process: same client API
  return createClient({ connection: createChdbConnection({ path: target.path }), log } as Parameters<
    typeof createClient
  >[0]);
}

export async function openStore(target: StoreTarget): Promise<Store> {
  const database = target.database;
  sqlIdentifier(database); // validates the name early, with a clear error
  const normalized: StoreTarget = target.kind === 'chdb' ? { ...target, path: resolve(target.path) } : target;
  let client: ClickHouseClient;
  try {
    client = makeClient(normalized);
  } catch (e) {
    // chDB holds its data folder exclusively (like a server): a second process cannot open it
    throw new CmError('UNAVAILABLE', `cannot open ${describeTarget(normalized)}: ${errorMessage(e)}`, {
      context: { store: describeTarget(normalized) },
      cause: e,
      hint: 'a chDB folder is used by one process at a time: query it after the all-in-one run ends, or use a ClickHouse server (--server)',
    });
  }
  let serverVersion: string;
  try {
    const rows = await (
      await client.query({ query: 'SELECT version() AS v', format: 'JSONEachRow' })
    ).json<{ v: string }>();
    serverVersion = rows[0].v;
    if (normalized.kind === 'server') {
      const exists = await (
        await client.query({
          query: `SELECT count() AS n FROM system.databases WHERE name = ${sqlString(database)}`,
          format: 'JSONEachRow',
        })
      ).json<{ n: string | number }>();
      if (Number(exists[0].n) === 0) {
        const onCluster = normalized.cluster ? ` ON CLUSTER ${sqlIdentifier(normalized.cluster)}` : '';
        await client.command({
          query: `CREATE DATABASE IF NOT EXISTS ${sqlIdentifier(database)}${onCluster}`,
        });
      }
      await client.close();
      client = makeClient(normalized, database);
    } else {
      // chDB ignores the client's `database` option; its session remembers USE instead
      await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${sqlIdentifier(database)}` });
      await client.command({ query: `USE ${sqlIdentifier(database)}` });
    }
  } catch (e) {
    await client.close().catch(() => undefined);
    throw storeError(normalized, 'connecting', e);
  }
  return new ClickHouseStore(
    normalized,
    client,
    serverVersion,
    featuresFor(parseServerVersion(serverVersion)),
  );
}

class ClickHouseStore implements Store {
  /** runId -> bundleId, to fill the concept dictionary from label rows. */
  private readonly bundles = new Map<string, string>();
  private readonly knownConcepts = new Set<string>();

  constructor(
    readonly target: StoreTarget,
    private readonly client: ClickHouseClient,
    readonly serverVersion: string,
    readonly features: StoreFeatures,
  ) {}

  get database(): string {
    return this.target.database;
  }

  get labelFormat(): LabelFormat {
    // chDB's connection decodes an insert body as UTF-8 text: binary rows would not survive it
    return this.target.kind === 'server' ? 'RowBinary' : 'TabSeparated';
  }

  newRows(): TableRows {
    return emptyRows(this.labelFormat);
  }

  private get cluster(): string | undefined {
    return this.target.kind === 'server' ? this.target.cluster : undefined;
  }

  /**
   * Settings of every insert. On a cluster, insert_distributed_sync: the INSERT into a Distributed
   * table returns once the shard has the rows (the default queues them on this node and returns),
   * so the recorder acks only what is stored.
   */
  private get insertSettings(): { insert_distributed_sync?: 1 } {
    return this.cluster ? { insert_distributed_sync: 1 } : {};
  }

  /** A schema statement as this store runs it: unchanged on one node, ON CLUSTER on a cluster. */
  private schemaStatements(statement: string | GuardedStatement): (string | GuardedStatement)[] {
    return this.cluster ? clusterStatements(statement, this.cluster) : [statement];
  }

  private async command(sql: string): Promise<void> {
    try {
      await this.client.command({ query: sql });
    } catch (e) {
      throw storeError(this.target, 'statement', e, sql);
    }
  }

  async appliedMigrations(): Promise<number[]> {
    for (const s of this.schemaStatements(MIGRATIONS_TABLE_DDL(this.database)))
      if (typeof s === 'string') await this.command(s);
    const rows = await this.query<{ version: number | string }>(
      `SELECT DISTINCT version FROM ${qualified(this.database, TABLES.migrations)} FINAL ORDER BY version`,
    );
    return rows.map((r) => Number(r.version));
  }

  /** Tables of the schema (TABLES) that the database lacks. */
  async missingTables(): Promise<string[]> {
    const rows = await this.query<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = ${sqlString(this.database)}`,
    );
    const present = new Set(rows.map((r) => r.name));
    return (this.cluster ? clusterTableNames() : Object.values(TABLES)).filter((t) => !present.has(t));
  }

  async migrate(migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
    const recorded = new Set(await this.appliedMigrations());
    // The ledger alone can lie: a table dropped by hand (or lost with its disk) stays "migrated",
    // and every later write fails. When a table that a recorded migration made is missing, every
    // migration runs again: each statement is idempotent (IF NOT EXISTS, or guarded by skipIf). A
    // table of a migration not applied yet (a store of an older version) is simply made by it.
    const ctx = { database: this.database, features: this.features };
    const made = new Set(
      migrations
        .filter((m) => recorded.has(m.version))
        .flatMap((m) => m.statements(ctx))
        .map((st) => CREATES_TABLE.exec(typeof st === 'string' ? st : st.sql)?.[1])
        .filter((t): t is string => t !== undefined),
    );
    const missing = (await this.missingTables()).filter(
      (t) => made.has(t) || made.has(t.replace(new RegExp(`${LOCAL_SUFFIX}$`), '')),
    );
    const applied = missing.length > 0 ? new Set<number>() : recorded;
    const now: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      for (const statement of m.statements(ctx).flatMap((s) => this.schemaStatements(s))) {
        if (typeof statement === 'string') await this.command(statement);
        else if ((await this.query(statement.skipIf)).length === 0) await this.command(statement.sql);
      }
      if (!recorded.has(m.version)) {
        await this.insert(TABLES.migrations, [
          { version: m.version, name: m.name, applied_at: Math.floor(Date.now() / 1000) },
        ]);
      }
      now.push(m.version);
    }
    return now;
  }

  private async insert(table: string, values: Record<string, unknown>[]): Promise<void> {
    if (values.length === 0) return;
    try {
      await this.client.insert({
        table: qualified(this.database, table),
        values,
        format: 'JSONEachRow',
        clickhouse_settings: this.insertSettings,
      });
    } catch (e) {
      throw storeError(this.target, `insert into ${table} (${values.length} rows)`, e);
    }
  }

  /**
   * One INSERT of pre-encoded rows, streamed chunk by chunk (no joined copy of the body). Retried
   * once on a dropped connection: rows are keyed by their natural key, so a repeated insert is
   * harmless.
   */
  private async insertBody(
    table: string,
    query: string,
    chunks: () => Iterable<string | Uint8Array>,
    rowCount: number,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await this.client.exec({
          query,
          values: Readable.from(chunks()),
          clickhouse_settings: this.insertSettings,
        });
        await new Promise<void>((resolve, reject) => {
          result.stream.on('end', resolve).on('error', reject).resume();
        });
        return;
      } catch (e) {
        const transient = /ECONNRESET|socket hang up|EPIPE/i.test(
          `${(e as { code?: string })?.code} ${errorMessage(e)}`,
        );
        if (attempt >= 2 || !transient)
          throw storeError(this.target, `insert into ${table} (${rowCount} rows)`, e);
      }
    }
  }

  private insertLines(key: TableKey, lines: string[], rowCount: number): Promise<void> {
    if (lines.length === 0) return Promise.resolve();
    const table = TABLE_OF[key];
    const { format, columns } = INSERT_FORMAT[key];
    const query = `INSERT INTO ${qualified(this.database, table)}${columns ? ` (${columns.join(', ')})` : ''} FORMAT ${format}`;
    // one string for the small tables; label chunks (one per labels record) streamed as they are
    return this.insertBody(
      table,
      query,
      () => (key === 'neuronLabels' ? lines.map((l) => l + '\n') : [lines.join('\n') + '\n']),
      rowCount,
    );
  }

  private insertLabelBytes(chunks: Uint8Array[], rowCount: number): Promise<void> {
    if (chunks.length === 0) return Promise.resolve();
    if (this.labelFormat !== 'RowBinary') {
      return Promise.reject(
        new CmError('INVALID_ARGUMENT', `${describeTarget(this.target)} cannot take RowBinary label rows`, {
          context: { store: describeTarget(this.target) },
          hint: 'fill the batch from store.newRows(), which uses the format of this store',
        }),
      );
    }
    const table = TABLE_OF.neuronLabels;
    const query = `INSERT INTO ${qualified(this.database, table)} (${NEURON_LABEL_COLUMNS.join(', ')}) FORMAT RowBinary`;
    return this.insertBody(table, query, () => chunks, rowCount);
  }

  async insertRows(rows: TableRows): Promise<void> {
    // tables are independent: insert them concurrently (one insert per table and batch)
    await Promise.all([
      ...TABLE_KEYS.map((k) => this.insertLines(k, rows.lines[k], rows.counts[k])),
      this.insertLabelBytes(rows.labelBytes, rows.counts.neuronLabels),
    ]);
    await this.recordConcepts(rows);
  }

  async insertRecords(records: CmRecord[]): Promise<void> {
    const rows = this.newRows();
    for (const r of records) appendRows(rows, r);
    await this.insertRows(rows);
  }

  async insertConcepts(bundleId: string, concepts: ConceptEntry[]): Promise<void> {
    const fresh = concepts.filter((c) => !this.knownConcepts.has(`${bundleId}\u0000${c.concept}`));
    const timeMs = Date.now();
    await this.insert(
      TABLES.concepts,
      fresh.map((c) => ({ bundle_id: bundleId, concept: c.concept, category: c.category, time_ms: timeMs })),
    );
    for (const c of fresh) this.knownConcepts.add(`${bundleId}\u0000${c.concept}`);
  }

  /** Concepts seen in label rows go into the dictionary under their run's bundle (when the run is known). */
  private async recordConcepts(rows: TableRows): Promise<void> {
    for (const [runId, bundle] of rows.runBundles) this.bundles.set(runId, bundle);
    for (const [runId, concepts] of rows.labelConcepts) {
      let bundle = this.bundles.get(runId);
      if (bundle === undefined) {
        const found = await this.query<{ bundle_id: string }>(
          `SELECT bundle_id FROM ${qualified(this.database, TABLES.runs)} FINAL WHERE run_id = ${sqlString(runId)} LIMIT 1`,
        );
        if (found.length === 0) continue; // the run record has not arrived yet; its later batches fill this in
        bundle = found[0].bundle_id;
        this.bundles.set(runId, bundle);
      }
      await this.insertConcepts(
        bundle,
        [...concepts].map(([concept, category]) => ({ concept, category })),
      );
    }
  }

  async query<T = Record<string, unknown>>(sql: string): Promise<T[]> {
    try {
      return await (await this.client.query({ query: sql, format: 'JSONEachRow' })).json<T>();
    } catch (e) {
      throw storeError(this.target, 'query', e, sql);
    }
  }

  /** The client's settings of a read, after refusing a write when it must be read-only. */
  private readSettings(sql: string, options: ReadOptions | undefined): { readonly?: '2' } {
    if (!options?.readOnly) return {};
    const refused = notAReadStatement(sql);
    if (refused) {
      throw new CmError('INVALID_ARGUMENT', refused, {
        context: { store: describeTarget(this.target), sql: sql.slice(0, 200) },
        hint: 'cm sql is read-only; pass --write to change the store',
      });
    }
    return this.target.kind === 'server' ? { readonly: '2' } : {};
  }

  async queryColumns(sql: string, options?: ReadOptions): Promise<QueryColumns> {
    const settings = this.readSettings(sql, options);
    try {
      const result = (await (
        await this.client.query({ query: sql, format: 'JSONCompact', clickhouse_settings: settings })
      ).json()) as unknown as {
        meta?: { name: string; type: string }[];
        data?: unknown[][];
      };
      return { columns: result.meta ?? [], rows: result.data ?? [] };
    } catch (e) {
      throw storeError(this.target, 'query', e, sql);
    }
  }

  async queryText(
    sql: string,
    format: 'CSVWithNames' | 'TabSeparatedWithNames' | 'JSONEachRow',
    options?: ReadOptions,
  ): Promise<string> {
    const settings = this.readSettings(sql, options);
    try {
      return await (await this.client.query({ query: sql, format, clickhouse_settings: settings })).text();
    } catch (e) {
      throw storeError(this.target, 'query', e, sql);
    }
  }

  async queryBinary(sql: string, format: BinaryFormat, options?: ReadOptions): Promise<Buffer> {
    const settings = this.readSettings(sql, options);
    try {
      // exec, not query: the client's ResultSet splits streams into rows and decodes text
      const { stream } = await this.client.exec({
        query: `${sql.trim().replace(/;+$/, '')}\nFORMAT ${format}`,
        clickhouse_settings: settings,
      });
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      return Buffer.concat(chunks);
    } catch (e) {
      throw storeError(this.target, 'query', e, sql);
    }
  }

  async execute(sql: string): Promise<void> {
    // on a cluster an INSERT ... VALUES (label_thinning records) returns once the shard has it
    try {
      await this.client.command({ query: sql, clickhouse_settings: this.insertSettings });
    } catch (e) {
      throw storeError(this.target, 'statement', e, sql);
    }
  }

  async close(): Promise<void> {
    await this.client.close().catch(() => undefined);
  }
}
