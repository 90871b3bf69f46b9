import * as tf from '@tensorflow/tfjs';
import { invalidArgument } from '@cm/core';
import { LOGITS } from './models';

/**
 * Lottery-ticket pruning (Frankle & Carbin 2019): train, remove the smallest-magnitude weights of
 * every conv and dense kernel, rewind the survivors to their values at the rewind step, train
 * again; the masks stay enforced all along (weights re-zeroed after every optimizer step).
 * Pruning is per layer; the output layer is pruned at half the rate, as in the paper.
 */
export interface LotteryMasks {
  /** kernel variable name -> 0/1 mask of the same shape */
  masks: Map<string, tf.Tensor>;
}

/** Kernels that are pruned: conv and dense kernels (biases and batch-norm parameters are kept). */
export function prunableWeights(model: tf.LayersModel): tf.LayerVariable[] {
  return model.layers
    .filter((l) => l.getClassName() === 'Conv2D' || l.getClassName() === 'Dense')
    .flatMap((l) => l.trainableWeights.filter((w) => /kernel/.test(w.originalName)));
}

export function layerOfWeight(w: tf.LayerVariable): string {
  return w.originalName.split('/')[0];
}

/** All-ones masks: round 0 (the dense network). */
export function fullMasks(model: tf.LayersModel): Map<string, tf.Tensor> {
  return new Map(prunableWeights(model).map((w) => [w.originalName, tf.onesLike(w.read())]));
}

/**
 * Masks of the next round: in every layer, among weights still alive, zero the `rate` fraction of
 * smallest magnitude (rate / 2 for the logits). Ties at the threshold are kept.
 */
export function pruneMasks(
  model: tf.LayersModel,
  masks: Map<string, tf.Tensor>,
  rate: number,
): Map<string, tf.Tensor> {
  if (!(rate > 0 && rate < 1)) throw invalidArgument(`lottery prune rate must be in (0, 1), got ${rate}`);
  const next = new Map<string, tf.Tensor>();
  for (const w of prunableWeights(model)) {
    const mask = masks.get(w.originalName) ?? tf.onesLike(w.read());
    const layerRate = layerOfWeight(w) === LOGITS ? rate / 2 : rate;
    const values = w.read().abs().dataSync() as Float32Array;
    const alive = mask.dataSync();
    const aliveMagnitudes: number[] = [];
    for (let i = 0; i < values.length; i++) if (alive[i] > 0) aliveMagnitudes.push(values[i]);
    const remove = Math.floor(aliveMagnitudes.length * layerRate);
    if (remove === 0) {
      next.set(w.originalName, mask.clone());
      continue;
    }
    aliveMagnitudes.sort((a, b) => a - b);
    const threshold = aliveMagnitudes[remove - 1];
    const out = new Float32Array(values.length);
    let removed = 0;
    for (let i = 0; i < values.length; i++) {
      if (alive[i] === 0) continue;
      if (values[i] <= threshold && removed < remove) {
        removed++;
        continue;
      }
      out[i] = 1;
    }
    next.set(w.originalName, tf.tensor(out, w.shape as number[]));
  }
  return next;
}

/** Multiply every masked kernel by its mask (after each optimizer step and after a rewind). */
export function applyMasks(model: tf.LayersModel, masks: Map<string, tf.Tensor>): void {
  tf.tidy(() => {
    for (const w of prunableWeights(model)) {
      const m = masks.get(w.originalName);
      if (m) w.write(w.read().mul(m));
    }
  });
}

/** Share of prunable weights that are zeroed by the masks. */
export function sparsity(masks: Map<string, tf.Tensor>): number {
  let total = 0;
  let kept = 0;
  for (const m of masks.values()) {
    total += m.size;
    kept += m.sum().dataSync()[0];
  }
  return total === 0 ? 0 : 1 - kept / total;
}

/** Copy of every weight of the model (the rewind point). */
export function snapshotWeights(model: tf.LayersModel): tf.Tensor[] {
  return model.getWeights().map((t) => t.clone());
}

export function restoreWeights(model: tf.LayersModel, weights: tf.Tensor[]): void {
  model.setWeights(weights);
}
