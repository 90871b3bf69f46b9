import { TABLES } from '@cm/contracts';
import { CmError } from '@cm/core';
import type { GuardedStatement } from './schema';
import { sqlIdentifier, sqlString } from './sql';

/**
 * ClickHouse cluster mode (CM_CLICKHOUSE_CLUSTER): the same schema, laid out for a cluster of
 * shards and replicas. Each table T becomes
 *   T_local  ReplicatedReplacingMergeTree on every node (same columns, key and version), and
 *   T        a Distributed table over T_local, sharded by cityHash64(run_id),
 * both made ON CLUSTER. Every query of the store, the UI and the dashboards reads T unchanged: all
 * rows of one run live on one shard, so FINAL (which de-duplicates per shard) stays exact. The
 * migration ledger is one replicated table on every node (no shards): each node can answer it.
 *
 * The single-node statements are the one definition of the schema; this module rewrites them
 * rather than keeping a second copy, and refuses a statement it does not recognise (a new kind of
 * migration must say how it runs on a cluster).
 */
export const LOCAL_SUFFIX = '_local';

/** The shard key of each table: the run, so a run's rows stay together (the concept dictionary: its bundle). */
function shardKey(table: string): string {
  return table === TABLES.concepts ? 'cityHash64(bundle_id)' : 'cityHash64(run_id)';
}

const CREATE =
  /^CREATE TABLE IF NOT EXISTS `([A-Za-z0-9_]+)`\.`([A-Za-z0-9_]+)` \(([\s\S]*)\) ENGINE = ReplacingMergeTree\(([^)]*)\) ([\s\S]*)$/;
const ALTER_ADD = /^ALTER TABLE `([A-Za-z0-9_]+)`\.`([A-Za-z0-9_]+)` (ADD COLUMN [\s\S]*)$/;

function unsupported(sql: string): CmError {
  return new CmError('INTERNAL', `no cluster form for the schema statement: ${sql.slice(0, 120)}`, {
    context: { sql: sql.slice(0, 500) },
    hint: 'teach libs/store/src/cluster.ts how this statement runs ON CLUSTER',
  });
}

/** The Distributed table `table` over `table_local` on every node of `cluster`. */
function distributedDdl(db: string, table: string, cluster: string): string {
  const local = `${table}${LOCAL_SUFFIX}`;
  return `CREATE TABLE IF NOT EXISTS \`${db}\`.\`${table}\` ON CLUSTER ${sqlIdentifier(cluster)} AS \`${db}\`.\`${local}\` ENGINE = Distributed(${sqlIdentifier(cluster)}, \`${db}\`, \`${local}\`, ${shardKey(table)})`;
}

/** One single-node statement as the statements that make it on `cluster`. */
export function clusterStatements(
  statement: string | GuardedStatement,
  cluster: string,
): (string | GuardedStatement)[] {
  const on = `ON CLUSTER ${sqlIdentifier(cluster)}`;
  const sql = typeof statement === 'string' ? statement : statement.sql;
  const create = CREATE.exec(sql);
  if (create) {
    const [, db, table, columns, version, rest] = create;
    const local = `${table}${LOCAL_SUFFIX}`;
    const zkPath = (shard: string): string => sqlString(`/clickhouse/tables/${shard}/${db}/${table}`);
    const args = (shard: string, replica: string): string =>
      [zkPath(shard), sqlString(replica), ...(version.trim() ? [version] : [])].join(', ');
    if (table === TABLES.migrations) {
      // one replica set spanning every node: {shard}-{replica} names each node uniquely
      return [
        `CREATE TABLE IF NOT EXISTS \`${db}\`.\`${table}\` ${on} (${columns}) ENGINE = ReplicatedReplacingMergeTree(${args('all', '{shard}-{replica}')}) ${rest}`,
      ];
    }
    return [
      `CREATE TABLE IF NOT EXISTS \`${db}\`.\`${local}\` ${on} (${columns}) ENGINE = ReplicatedReplacingMergeTree(${args('{shard}', '{replica}')}) ${rest}`,
      distributedDdl(db, table, cluster),
    ];
  }
  const alter = ALTER_ADD.exec(sql);
  if (alter) {
    const [, db, table, change] = alter;
    // The local tables hold the data and are altered. The Distributed table must show the column
    // too, but ClickHouse refuses ALTER ... ON CLUSTER on a table that is not replicated when the
    // cluster's shards are; it holds no data (inserts are synchronous), so it is made again over
    // the altered local table. Each statement keeps a guard asked of the table it changes, so a
    // half-applied migration resumes cleanly.
    const local = `${table}${LOCAL_SUFFIX}`;
    const localSql = `ALTER TABLE \`${db}\`.\`${local}\` ${on} ${change}`;
    const dropDist = `DROP TABLE IF EXISTS \`${db}\`.\`${table}\` ${on}`;
    const createDist = distributedDdl(db, table, cluster);
    if (typeof statement === 'string') return [localSql, dropDist, createDist];
    const tableLiteral = sqlString(table);
    if (!statement.skipIf.includes(tableLiteral)) throw unsupported(statement.skipIf);
    return [
      { sql: localSql, skipIf: statement.skipIf.replace(tableLiteral, sqlString(local)) },
      { sql: dropDist, skipIf: statement.skipIf },
      createDist,
    ];
  }
  throw unsupported(sql);
}

/** The schema's tables on a cluster: each table and its local table (the ledger has none). */
export function clusterTableNames(): string[] {
  return Object.values(TABLES).flatMap((t) => (t === TABLES.migrations ? [t] : [t, `${t}${LOCAL_SUFFIX}`]));
}
