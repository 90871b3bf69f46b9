export * from './server';
export * from './session';
export * from './status';
export * from './publisher';
export * from './all-in-one';
export * from './metrics';
export * from './memory-budget';
