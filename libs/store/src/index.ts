export * from './sql';
export * from './version';
export * from './schema';
export * from './rows';
export * from './queries';
export * from './store';
export * from './reader-endpoint';
export * from './cluster';
