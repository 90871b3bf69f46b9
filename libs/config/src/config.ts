import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { CmError } from '@cm/core';

/**
 * The one configuration module. Every setting is an environment variable with a default for local
 * use; commands may override single values from flags. `loadConfig` validates everything at start
 * and reports every problem at once, naming the variable.
 *
 * Add a setting: one line in ENV (variable -> path) and one in the schema below.
 */
const port = z.coerce.number().int().min(1).max(65535);
const positiveInt = z.coerce.number().int().positive();
const fraction = z.coerce.number().min(0).max(1);
const url = z.string().url();

export const configSchema = z.object({
  log: z.object({
    level: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
    format: z.enum(['text', 'json']).default('text'),
  }),
  /** Where local state lives (stack data, embedded store, bundles), relative to the working directory. */
  home: z.string().default('.cm'),
  nats: z.object({
    url: z.string().default('nats://127.0.0.1:4222'),
    user: z.string().optional(),
    password: z.string().optional(),
    /** JetStream stream replicas (1 locally, 3 in a NATS cluster). */
    replicas: positiveInt.default(1),
  }),
  clickhouse: z.object({
    url: url.default('http://127.0.0.1:8123'),
    user: z.string().default('default'),
    password: z.string().default(''),
    database: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .default('concept_monitor'),
    /**
     * A cluster of the server's remote_servers: tables are made ON CLUSTER as replicated local
     * tables with a Distributed table over each, sharded by run (libs/store/src/cluster.ts). Empty:
     * single-node tables.
     */
    cluster: z
      .string()
      .regex(/^([A-Za-z_][A-Za-z0-9_]*)?$/)
      .default(''),
  }),
  /** Embedded chDB store folder (all-in-one mode and the demo). */
  chdbPath: z.string().default('.cm/store'),
  grpc: z.object({
    /** Address the concept service listens on. */
    listen: z.string().default('127.0.0.1:50051'),
    /** Address trainers connect to. */
    target: z.string().default('127.0.0.1:50051'),
    maxMessageBytes: positiveInt.default(4 * 1024 * 1024),
    /** Concept service: bound on one checkpoint's activation bytes (all layers). */
    maxCheckpointBytes: positiveInt.default(2 * 1024 * 1024 * 1024),
    /** Concept service: bound on activation bytes held across all streams (see libs/concept-server memory-budget). */
    maxBufferedBytes: positiveInt.default(1024 * 1024 * 1024),
    /** Trainers, delivery policy spool: bound on one run's spool folder (<CM_HOME>/spool/<run id>), bytes. */
    spoolMaxBytes: positiveInt.default(2 * 1024 * 1024 * 1024),
  }),
  bundles: z.object({ dir: z.string().default('.cm/bundles') }),
  /** `cm ui` (and the view `cm demo` starts): where the web view listens. */
  ui: z.object({ host: z.string().default('127.0.0.1'), port: port.default(6060) }),
  /** HTTP health endpoints (GET /healthz) of the two app services. */
  service: z.object({
    healthPort: port.default(8081),
    /** Concept service: drop a run from memory after this long without a checkpoint or stream (state stays in the KV bucket); 0 = never. */
    runIdleMs: z.coerce
      .number()
      .int()
      .min(0)
      .default(60 * 60 * 1000),
    /** Concept service: drop a run's saved state this long after its last checkpoint (abandoned runs); 0 = keep until RunEnd. */
    runStateTtlHours: z.coerce.number().min(0).default(0),
  }),
  recorder: z.object({
    healthPort: port.default(8082),
    batchMessages: positiveInt.default(100),
    ackWaitMs: positiveInt.default(30_000),
  }),
  stack: z.object({
    dir: z.string().default('.cm/stack'),
    natsPort: port.default(4222),
    natsMonitorPort: port.default(8222),
    clickhouseHttpPort: port.default(8123),
    clickhouseTcpPort: port.default(9000),
    /**
     * nats-server nodes of the local stack: 1, or a JetStream cluster of 3 or more (node i takes
     * CM_NATS_PORT + i, CM_NATS_MONITOR_PORT + i and CM_NATS_ROUTE_PORT + i).
     */
    natsNodes: z.coerce
      .number()
      .int()
      .min(1)
      .refine((n) => n === 1 || n >= 3, 'a JetStream cluster needs 3 or more nodes (or 1 for none)')
      .default(1),
    natsRoutePort: port.default(6222),
    /**
     * ClickHouse of the local stack: 1 x 1 is one clickhouse-server; more is a cluster (ZooKeeper on
     * CM_ZOOKEEPER_PORT and shards x replicas nodes, node k = shard * replicas + replica taking
     * CM_CLICKHOUSE_HTTP_PORT + k, CM_CLICKHOUSE_TCP_PORT + k and CM_CLICKHOUSE_INTERSERVER_PORT + k).
     */
    clickhouseShards: z.coerce.number().int().min(1).max(16).default(1),
    clickhouseReplicas: z.coerce.number().int().min(1).max(8).default(1),
    clickhouseInterserverPort: port.default(9009),
    zookeeperPort: port.default(2181),
  }),
  dissect: z.object({
    workers: positiveInt.default(Math.max(1, cpus().length)),
    method: z.enum(['soft_wpmi', 'wpmi', 'cos', 'cos_cubed', 'rank_reorder']).default('soft_wpmi'),
    /** Evidence kept per neuron and checkpoint: its top activating probe images (neuron_labels.top_images). */
    topImages: z.coerce.number().int().min(0).max(1000).default(8),
  }),
  trainer: z.object({
    /** The trainer service's default --diversity-reg: weight of the concept-diversity regulariser (0: off). */
    diversityReg: z.coerce.number().min(0).max(100).default(0),
  }),
  /**
   * Retention of neuron_labels (libs/store/src/retention.ts, docs/store.md "Retention"): label rows
   * older than fullDays and outside a run's newest fullCheckpoints checkpoints are kept at every
   * keepEvery-th checkpoint only; runs, checkpoints, layer_metrics and alerts are always kept.
   * keepEvery 0 (the default) or 1: off.
   */
  retention: z
    .object({
      fullDays: z.coerce.number().min(0).default(0),
      fullCheckpoints: z.coerce.number().int().min(0).default(0),
      keepEvery: z.coerce.number().int().min(0).default(0),
      /** How often the recorder and cm serve run a pass (minutes). */
      intervalMinutes: z.coerce.number().positive().default(60),
    })
    .refine((r) => r.keepEvery < 2 || r.fullDays > 0 || r.fullCheckpoints > 0, {
      message:
        'thinning needs a bound that keeps the newest labels: set CM_LABELS_FULL_DAYS or CM_LABELS_FULL_CHECKPOINTS',
      path: ['keepEvery'],
    }),
  alerts: z.object({
    webhookUrl: url.optional(),
    /** Diversity below this share of the layer's recent median fires `diversity_drop`. */
    diversityDropRatio: fraction.default(0.5),
    /** Absolute floor of the distinct-concept share. */
    diversityFloor: fraction.default(0.05),
    /** One concept holding more than this share of a layer fires `concept_dominance`. */
    dominanceShare: fraction.default(0.6),
    /** Recent-history window (checkpoints) for `diversity_drop`. */
    window: positiveInt.default(5),
    /** Checkpoints a condition must hold (or be clear) before firing (or resolving). */
    hysteresis: positiveInt.default(2),
    /** Interpretable share below this share of the layer's recent median fires `interpretable_vanish`. */
    interpretableVanishRatio: fraction.default(0.5),
    /** Share of dead neurons (never active on the probe set) above which `dead_neurons` fires. */
    deadShare: fraction.default(0.5),
    /** Webhook delivery: attempts after the first, first backoff, per-request timeout. */
    webhookRetries: z.coerce.number().int().min(0).default(3),
    webhookBackoffMs: positiveInt.default(500),
    webhookTimeoutMs: positiveInt.default(5000),
  }),
});

export type CmConfig = z.infer<typeof configSchema>;

/** Environment variable -> dotted config path. */
export const ENV: Record<string, string> = {
  CM_LOG_LEVEL: 'log.level',
  CM_LOG_FORMAT: 'log.format',
  CM_HOME: 'home',
  CM_NATS_URL: 'nats.url',
  CM_NATS_USER: 'nats.user',
  CM_NATS_PASSWORD: 'nats.password',
  CM_NATS_REPLICAS: 'nats.replicas',
  CM_CLICKHOUSE_URL: 'clickhouse.url',
  CM_CLICKHOUSE_USER: 'clickhouse.user',
  CM_CLICKHOUSE_PASSWORD: 'clickhouse.password',
  CM_CLICKHOUSE_DATABASE: 'clickhouse.database',
  CM_CLICKHOUSE_CLUSTER: 'clickhouse.cluster',
  CM_CHDB_PATH: 'chdbPath',
  CM_GRPC_LISTEN: 'grpc.listen',
  CM_GRPC_TARGET: 'grpc.target',
  CM_GRPC_MAX_MESSAGE_BYTES: 'grpc.maxMessageBytes',
  CM_SERVICE_MAX_CHECKPOINT_BYTES: 'grpc.maxCheckpointBytes',
  CM_SPOOL_MAX_BYTES: 'grpc.spoolMaxBytes',
  CM_SERVICE_MAX_BUFFERED_BYTES: 'grpc.maxBufferedBytes',
  CM_BUNDLE_DIR: 'bundles.dir',
  CM_UI_HOST: 'ui.host',
  CM_UI_PORT: 'ui.port',
  CM_SERVICE_HEALTH_PORT: 'service.healthPort',
  CM_SERVICE_RUN_IDLE_MS: 'service.runIdleMs',
  CM_RUN_STATE_TTL_HOURS: 'service.runStateTtlHours',
  CM_RECORDER_HEALTH_PORT: 'recorder.healthPort',
  CM_RECORDER_BATCH_MESSAGES: 'recorder.batchMessages',
  CM_RECORDER_ACK_WAIT_MS: 'recorder.ackWaitMs',
  CM_STACK_DIR: 'stack.dir',
  CM_NATS_PORT: 'stack.natsPort',
  CM_NATS_MONITOR_PORT: 'stack.natsMonitorPort',
  CM_CLICKHOUSE_HTTP_PORT: 'stack.clickhouseHttpPort',
  CM_CLICKHOUSE_TCP_PORT: 'stack.clickhouseTcpPort',
  CM_STACK_NATS_NODES: 'stack.natsNodes',
  CM_NATS_ROUTE_PORT: 'stack.natsRoutePort',
  CM_STACK_CLICKHOUSE_SHARDS: 'stack.clickhouseShards',
  CM_STACK_CLICKHOUSE_REPLICAS: 'stack.clickhouseReplicas',
  CM_CLICKHOUSE_INTERSERVER_PORT: 'stack.clickhouseInterserverPort',
  CM_ZOOKEEPER_PORT: 'stack.zookeeperPort',
  CM_DISSECT_WORKERS: 'dissect.workers',
  CM_DISSECT_METHOD: 'dissect.method',
  CM_DISSECT_TOP_IMAGES: 'dissect.topImages',
  CM_TRAINER_DIVERSITY_REG: 'trainer.diversityReg',
  CM_LABELS_FULL_DAYS: 'retention.fullDays',
  CM_LABELS_FULL_CHECKPOINTS: 'retention.fullCheckpoints',
  CM_LABELS_KEEP_EVERY: 'retention.keepEvery',
  CM_RETENTION_INTERVAL_MINUTES: 'retention.intervalMinutes',
  CM_ALERT_WEBHOOK_URL: 'alerts.webhookUrl',
  CM_ALERT_DIVERSITY_DROP_RATIO: 'alerts.diversityDropRatio',
  CM_ALERT_DIVERSITY_FLOOR: 'alerts.diversityFloor',
  CM_ALERT_DOMINANCE_SHARE: 'alerts.dominanceShare',
  CM_ALERT_WINDOW: 'alerts.window',
  CM_ALERT_HYSTERESIS: 'alerts.hysteresis',
  CM_ALERT_INTERPRETABLE_VANISH_RATIO: 'alerts.interpretableVanishRatio',
  CM_ALERT_DEAD_SHARE: 'alerts.deadShare',
  CM_ALERT_WEBHOOK_RETRIES: 'alerts.webhookRetries',
  CM_ALERT_WEBHOOK_BACKOFF_MS: 'alerts.webhookBackoffMs',
  CM_ALERT_WEBHOOK_TIMEOUT_MS: 'alerts.webhookTimeoutMs',
};

type Tree = { [key: string]: Tree | string | number | boolean | undefined };

function setPath(tree: Tree, path: string, value: string | number | boolean): void {
  const keys = path.split('.');
  let node = tree;
  for (const k of keys.slice(0, -1)) {
    if (typeof node[k] !== 'object' || node[k] === null) node[k] = {};
    node = node[k] as Tree;
  }
  node[keys[keys.length - 1]] = value;
}

/**
 * Build the validated configuration from the environment and flag overrides
 * (`{ 'grpc.listen': '0.0.0.0:50051' }`). Throws CmError('CONFIG') naming every bad variable.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Record<string, string | number | boolean | undefined> = {},
): CmConfig {
  const tree: Tree = {
    log: {},
    nats: {},
    clickhouse: {},
    grpc: {},
    bundles: {},
    ui: {},
    service: {},
    recorder: {},
    stack: {},
    dissect: {},
    trainer: {},
    retention: {},
    alerts: {},
  };
  for (const [name, path] of Object.entries(ENV)) {
    const v = env[name];
    if (v !== undefined && v !== '') setPath(tree, path, v);
  }
  for (const [path, v] of Object.entries(overrides)) if (v !== undefined) setPath(tree, path, v);
  // Local state lives under CM_HOME unless a path of its own is given: moving the home moves the
  // embedded store, the bundles and the stack with it (a fresh CM_HOME is a fresh machine).
  if (typeof tree.home === 'string') {
    const home = tree.home;
    if (tree.chdbPath === undefined) tree.chdbPath = join(home, 'store');
    const bundles = tree.bundles as Tree;
    if (bundles.dir === undefined) bundles.dir = join(home, 'bundles');
    const stack = tree.stack as Tree;
    if (stack.dir === undefined) stack.dir = join(home, 'stack');
  }
  const parsed = configSchema.safeParse(tree);
  if (!parsed.success) {
    const byPath = Object.fromEntries(Object.entries(ENV).map(([k, v]) => [v, k]));
    const problems = parsed.error.issues.map((i) => {
      const path = i.path.join('.');
      return `${byPath[path] ?? path}: ${i.message}`;
    });
    throw new CmError('CONFIG', `invalid configuration: ${problems.join('; ')}`, {
      context: { problems },
      hint: 'fix the environment variables named above (see README, Configuration)',
    });
  }
  return parsed.data;
}

/**
 * Every setting at its default (no environment, no overrides): the one place defaults live. Libraries
 * that need a default (alert thresholds, the dissection method) read it from here.
 */
export function configDefaults(): CmConfig {
  return loadConfig({});
}

/** Resolve a configured path against the working directory. */
export function resolvePath(p: string, cwd = process.cwd()): string {
  return resolve(cwd, p);
}
