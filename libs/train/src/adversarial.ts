import * as tf from '@tensorflow/tfjs';
import { invalidArgument } from '@cm/core';

/**
 * Adversarial examples for adversarial training (Madry et al. 2018), inputs in [0, 1]:
 *   pgd:  start at a uniform random point of the L-inf ball, then `steps` signed-gradient ascent
 *         steps of size `stepSize` (default 2.5 * eps / steps), each projected back onto the ball
 *         and [0, 1].
 *   fgsm: one step of size 1.25 * eps from a random start ("fast" FGSM, Wong et al. 2020), the
 *         cheap option: one extra forward/backward per batch instead of k.
 */
export interface AttackSpec {
  method: 'pgd' | 'fgsm';
  /** L-inf budget in [0, 1] pixel units (8/255 is the CIFAR convention). */
  epsilon: number;
  /** PGD iterations (ignored by fgsm). */
  steps?: number;
  stepSize?: number;
  seed?: number;
  /**
   * Ramp the budget linearly from 0 to `epsilon` over the first `warmupSteps` optimizer steps
   * (default 0: full budget from the start). Why: with the full budget from step 0 the default
   * model (max-pooled head) stayed at chance for all 1000 steps of FGSM training (loss ln 8 at
   * every step, docs/trainer.md): the attack kept its ReLUs from ever learning clean features.
   * Ramping the budget is the usual remedy (epsilon scheduling).
   */
  warmupSteps?: number;
}

/** The budget at optimizer step `step` (0-based) under the spec's warm-up. */
export function epsilonAt(spec: AttackSpec, step: number): number {
  const w = spec.warmupSteps ?? 0;
  return w > 0 ? spec.epsilon * Math.min(1, step / w) : spec.epsilon;
}

export function checkAttack(spec: AttackSpec): Required<Omit<AttackSpec, 'seed'>> & { seed: number } {
  if (!(spec.epsilon > 0 && spec.epsilon <= 1))
    throw invalidArgument(
      `adversarial epsilon must be in (0, 1], got ${spec.epsilon}`,
      { epsilon: spec.epsilon },
      'pixels are in [0, 1]: 8/255 = 0.0314',
    );
  const steps = spec.method === 'fgsm' ? 1 : (spec.steps ?? 3);
  if (!Number.isInteger(steps) || steps < 1 || steps > 100)
    throw invalidArgument(`PGD steps must be an integer from 1 to 100, got ${steps}`);
  const warmupSteps = spec.warmupSteps ?? 0;
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0)
    throw invalidArgument(`epsilon warm-up must be a non-negative number of steps, got ${warmupSteps}`);
  const stepSize =
    spec.stepSize ?? (spec.method === 'fgsm' ? 1.25 * spec.epsilon : (2.5 * spec.epsilon) / steps);
  return { method: spec.method, epsilon: spec.epsilon, steps, stepSize, seed: spec.seed ?? 0, warmupSteps };
}

/** The loss a model in inference mode has on (x, one-hot y): what the attack climbs. */
export function perturb(
  model: tf.LayersModel,
  x: tf.Tensor4D,
  yOneHot: tf.Tensor2D,
  spec: AttackSpec,
  step = 0,
): tf.Tensor4D {
  const full = checkAttack(spec);
  // Under warm-up the whole attack (budget and step size) is scaled down together.
  const scale = full.epsilon > 0 ? epsilonAt(full, step) / full.epsilon : 1;
  if (scale === 0) return tf.clone(x);
  const a = { ...full, epsilon: full.epsilon * scale, stepSize: full.stepSize * scale };
  return tf.tidy(() => {
    const lossOf = (xa: tf.Tensor) =>
      tf.losses.softmaxCrossEntropy(yOneHot, model.apply(xa, { training: false }) as tf.Tensor) as tf.Scalar;
    const grad = tf.grad(lossOf);
    const lo = x.sub(a.epsilon).clipByValue(0, 1);
    const hi = x.add(a.epsilon).clipByValue(0, 1);
    let xa = x
      .add(tf.randomUniform(x.shape, -a.epsilon, a.epsilon, 'float32', a.seed * 1_000_003 + step))
      .clipByValue(0, 1) as tf.Tensor4D;
    for (let i = 0; i < a.steps; i++) {
      const g = grad(xa);
      xa = tf.minimum(tf.maximum(xa.add(g.sign().mul(a.stepSize)), lo), hi) as tf.Tensor4D;
    }
    return xa;
  });
}
