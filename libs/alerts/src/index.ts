export * from './collapse';
export * from './webhook';
export * from './replay';
