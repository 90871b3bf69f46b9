export * from '@cm/recorder-consumer';
export { startRecorder, type RunningRecorder } from './main';
