/** ClickHouse table names, in one place (the database name comes from configuration). */
export const TABLES = {
  runs: 'runs',
  checkpoints: 'checkpoints',
  neuronLabels: 'neuron_labels',
  layerMetrics: 'layer_metrics',
  alerts: 'alerts',
  concepts: 'concepts',
  /** What the retention job thinned out of neuron_labels (libs/store/src/retention.ts, migration 5). */
  labelThinning: 'label_thinning',
  migrations: 'schema_migrations',
} as const;
export type TableName = (typeof TABLES)[keyof typeof TABLES];
