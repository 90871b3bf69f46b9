export * from './bus';
export * from './split';
