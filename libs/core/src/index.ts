export * from './errors';
export * from './log';
export * from './worker';
export * from './net';
export * from './npy';
export * from './service';
export * from './random';
