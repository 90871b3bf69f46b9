import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../src/backend';
import { createLogger } from '@cm/core';

/** Tests train on the backend the trainer picks (wasm here), quietly. */
export async function useTrainingBackend(): Promise<void> {
  await selectBackend({ log: { ...createLogger('test'), info: () => undefined } });
  expect(['wasm', 'tensorflow', 'cpu']).toContain(tf.getBackend());
}
