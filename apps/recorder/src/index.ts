export * from './recorder';
export { startRecorder, type RunningRecorder } from './main';
