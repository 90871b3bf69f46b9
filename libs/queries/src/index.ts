export * from './literal';
export * from './questions';
export * from './setup';
