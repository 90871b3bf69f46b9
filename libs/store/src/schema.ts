import { TABLES } from '@cm/contracts';
import { sqlIdentifier, sqlString } from './sql';
import type { StoreFeatures } from './version';

/**
 * The schema, as versioned migrations. Applied versions are recorded in TABLES.migrations; every
 * statement is also idempotent on its own (IF NOT EXISTS, or a GuardedStatement where 18.16 lacks
 * the IF NOT EXISTS form), so a migration interrupted half way is simply applied again.
 *
 * Exactly-once: every table is a ReplacingMergeTree whose ORDER BY is the record's natural key
 * (neuron_labels: run_id, layer, step, neuron) with `time_ms` as the version. A redelivered or
 * re-published record inserts the same key again; background merges keep one row per key (the
 * newest), and every query we ship reads with FINAL so the answer is exact before merges run.
 * There is no PARTITION BY: ReplacingMergeTree de-duplicates only inside a partition, and a
 * partition key outside the natural key (month of `time`) could put a recomputed row into
 * another partition than the original.
 */
export interface SchemaContext {
  database: string;
  features: StoreFeatures;
}

/**
 * A statement that is not idempotent on every server we support, with the SELECT that tells whether
 * it already took effect: the statement is skipped when `skipIf` returns a row.
 */
export interface GuardedStatement {
  sql: string;
  skipIf: string;
}

export interface Migration {
  version: number;
  name: string;
  statements(ctx: SchemaContext): (string | GuardedStatement)[];
}

export function qualified(database: string, table: string): string {
  return `${sqlIdentifier(database)}.${sqlIdentifier(table)}`;
}

function types(f: StoreFeatures) {
  const codec = (c: string): string => (f.codecs ? ` CODEC(${c})` : '');
  return {
    /** a string with few distinct values (layer, concept, category, status...) */
    label: f.lowCardinality ? 'LowCardinality(String)' : 'String',
    labelArray: f.lowCardinality ? 'Array(LowCardinality(String))' : 'Array(String)',
    time: `DateTime${codec('Delta, ZSTD(1)')}`,
    timeMs: `UInt64${codec('Delta, ZSTD(1)')}`,
    f32: `Float32${codec('ZSTD(1)')}`,
    f64: `Float64${codec('ZSTD(1)')}`,
  };
}

export const MIGRATIONS_TABLE_DDL = (database: string): string =>
  `CREATE TABLE IF NOT EXISTS ${qualified(database, TABLES.migrations)} (version UInt32, name String, applied_at DateTime) ENGINE = ReplacingMergeTree() ORDER BY version`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, checkpoints, neuron_labels, layer_metrics, alerts, concepts',
    statements: (ctx) => {
      const t = types(ctx.features);
      const q = (table: string): string => qualified(ctx.database, table);
      return [
        `CREATE TABLE IF NOT EXISTS ${q(TABLES.runs)} (
  run_id String, model String, paradigm ${t.label}, bundle_id String,
  layers Nested(name String, width UInt32),
  tags Nested(key String, value String),
  status ${t.label}, started_at DateTime, ended_at DateTime,
  time ${t.time}, time_ms ${t.timeMs}
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY run_id`,
        `CREATE TABLE IF NOT EXISTS ${q(TABLES.checkpoints)} (
  run_id String, step UInt32,
  metrics Nested(name String, value Float64),
  time ${t.time}, time_ms ${t.timeMs}
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY (run_id, step)`,
        `CREATE TABLE IF NOT EXISTS ${q(TABLES.neuronLabels)} (
  run_id String, layer ${t.label}, step UInt32, neuron UInt32,
  concept ${t.label}, category ${t.label}, score ${t.f32},
  interpretable UInt8, dead UInt8,
  top_concepts ${t.labelArray}, top_scores Array(Float32),
  x ${t.f32}, y ${t.f32},
  time ${t.time}, time_ms ${t.timeMs}
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY (run_id, layer, step, neuron)`,
        `CREATE TABLE IF NOT EXISTS ${q(TABLES.layerMetrics)} (
  run_id String, layer ${t.label}, step UInt32, neurons UInt32,
  interpretable_fraction Float64, mean_top_score Float64, distinct_concept_share Float64,
  label_entropy Float64, embedding_spread Float64, dead_fraction Float64,
  switches UInt32, switch_fraction Float64, threshold Float64,
  category_shares Nested(category String, share Float64),
  top_concepts Nested(concept String, count UInt32),
  time ${t.time}, time_ms ${t.timeMs}
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY (run_id, layer, step)`,
        `CREATE TABLE IF NOT EXISTS ${q(TABLES.alerts)} (
  alert_id String, run_id String, layer ${t.label}, step UInt32,
  rule ${t.label}, state ${t.label}, severity ${t.label},
  value Float64, threshold Float64, message String,
  time ${t.time}, time_ms ${t.timeMs}
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY (run_id, alert_id, state)`,
        `CREATE TABLE IF NOT EXISTS ${q(TABLES.concepts)} (
  bundle_id String, concept String, category ${t.label},
  time_ms ${t.timeMs}
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY (bundle_id, concept)`,
      ];
    },
  },
  {
    version: 2,
    name: 'neuron_labels.top_images (evidence: top activating probe images per neuron)',
    // 18.16 has no ADD COLUMN IF NOT EXISTS (a syntax error there, tested in libs/store/test), so
    // the plain ALTER is guarded by system.columns. Rows written before it read as [] (the column's
    // default); old parts are not rewritten.
    statements: (ctx) => [
      {
        sql: `ALTER TABLE ${qualified(ctx.database, TABLES.neuronLabels)} ADD COLUMN top_images Array(UInt32)`,
        skipIf: `SELECT name FROM system.columns WHERE database = ${sqlString(ctx.database)} AND table = ${sqlString(TABLES.neuronLabels)} AND name = 'top_images'`,
      },
    ],
  },
  {
    version: 3,
    name: 'runs.setup_* (the method, parameters, pooling, calibration and concept set of each run)',
    // one guarded ALTER per column, as in migration 2; runs recorded before read as ''
    statements: (ctx) =>
      RUN_SETUP_COLUMNS.map((column) => ({
        sql: `ALTER TABLE ${qualified(ctx.database, TABLES.runs)} ADD COLUMN ${column} String`,
        skipIf: `SELECT name FROM system.columns WHERE database = ${sqlString(ctx.database)} AND table = ${sqlString(TABLES.runs)} AND name = ${sqlString(column)}`,
      })),
  },
  {
    version: 4,
    name: 'layer_metrics.learned_fraction, learned_chance (the learned-concept figure, docs/dissect.md)',
    // Guarded ALTERs as in migration 2. Nullable: NULL while a run's architecture has no random-init
    // baseline yet (and for rows written before this migration), never 0, which would read as
    // "learned nothing".
    statements: (ctx) =>
      LEARNED_COLUMNS.map((column) => ({
        sql: `ALTER TABLE ${qualified(ctx.database, TABLES.layerMetrics)} ADD COLUMN ${column} Nullable(Float64)`,
        skipIf: `SELECT name FROM system.columns WHERE database = ${sqlString(ctx.database)} AND table = ${sqlString(TABLES.layerMetrics)} AND name = ${sqlString(column)}`,
      })),
  },
  {
    version: 5,
    name: 'label_thinning (what the retention job thinned out of neuron_labels)',
    // One row per pass and run: the steps after after_step up to through_step were decided, the
    // labels of every keep_every-th checkpoint kept (libs/store/src/retention.ts). Retention is a
    // job rather than a TTL: a TTL drops whole rows by age (it cannot keep every k-th checkpoint or
    // the steps of alert episodes) and 18.16 has none; the job runs the same on every server.
    statements: (ctx) => [
      `CREATE TABLE IF NOT EXISTS ${qualified(ctx.database, TABLES.labelThinning)} (
  run_id String, after_step Int64, through_step UInt32, keep_every UInt32,
  full_days Float64, full_checkpoints UInt32, steps_removed UInt32, rows_removed UInt64,
  time DateTime, time_ms UInt64
) ENGINE = ReplacingMergeTree(time_ms) ORDER BY (run_id, through_step)`,
    ],
  },
  {
    version: 6,
    name: "neuron_labels.previous_concept (each neuron's concept at the previous checkpoint: label switches)",
    // A guarded ALTER as in migration 2 (cluster.ts alters the local tables and remakes the
    // Distributed one). Rows written before it read as '' (the column's default), which the
    // switching questions cannot tell from a first checkpoint: libs/queries' switchingLayerModeSql
    // says per layer whether its switches were recorded (docs/store.md, "Label switches").
    statements: (ctx) => [
      {
        sql: `ALTER TABLE ${qualified(ctx.database, TABLES.neuronLabels)} ADD COLUMN previous_concept ${types(ctx.features).label}`,
        skipIf: `SELECT name FROM system.columns WHERE database = ${sqlString(ctx.database)} AND table = ${sqlString(TABLES.neuronLabels)} AND name = 'previous_concept'`,
      },
    ],
  },
];

/** layer_metrics columns of the learned-concept figure (migration 4): LayerSnapshotRecord.learnedFraction, learnedChance. */
export const LEARNED_COLUMNS = ['learned_fraction', 'learned_chance'] as const;

/** The runs table's columns of RunRecord.setup (migration 3), in RunSetup's order. */
export const RUN_SETUP_COLUMNS = [
  'setup_method',
  'setup_params',
  'setup_pooling',
  'setup_calibration',
  'concept_set_hash',
  'clip_model',
  'code_version',
] as const;
