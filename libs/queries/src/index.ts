export * from './literal';
export * from './questions';
