export * from './bundle';
export * from './world';
export * from './synthetic';
export { normaliseRows } from './linalg';
export { mulberry32, deriveSeed, type Rng } from './rng';
export * from './preview';
export * from './inspect';
export * from './clip';
