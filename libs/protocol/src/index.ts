export * from './proto';
export * from './types';
export * from './wire';
export * from './assembler';
export * from './status';
export { float16ToFloat32, float32ToFloat16 } from './float16';
export type * as generated from './generated/monitor';
