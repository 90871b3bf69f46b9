export * from './subjects';
export * from './tables';
export * from './records';
export * from './monitor';
export * from './run-state';
export * from './label-columns';
export * from './limits';
export * from './baselines';
