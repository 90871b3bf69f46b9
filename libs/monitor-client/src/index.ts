export * from './client';
export * from './wire';
export { float16ToFloat32, float32ToFloat16 } from './float16';
