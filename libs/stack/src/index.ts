export * from './process';
export * from './servers';
export * from './stack';
export * from './clickhouse-cluster';
export * from './apps';
