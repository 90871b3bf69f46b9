export * from './collapse';
export * from './webhook';
export * from './replay';
export * from './delivery';
