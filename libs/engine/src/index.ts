export * from './engine';
export * from './validate';
export * from './records';
export * from './sink';
export * from './local';
export * from './dissectors';
export * from './run-state';
