export * from './bus';
export * from './split';
export * from './run-state-kv';
export * from './baseline-kv';
