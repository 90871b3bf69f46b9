import * as tf from '@tensorflow/tfjs';
import {
  findingLine,
  formatInterval,
  randomMasksLike,
  tInterval,
  tQuantile975,
  verdictOf,
  type Interval,
} from '../src/findings';
import { useTrainingBackend } from './setup';

beforeAll(useTrainingBackend);

const at = (lo: number, hi: number): Interval => ({ mean: (lo + hi) / 2, lo, hi, n: 3, values: [] });

describe('findings statistics', () => {
  it('t-interval: mean +- t(0.975, n-1) sd / sqrt(n)', () => {
    expect(tQuantile975(2)).toBe(4.303);
    expect(tQuantile975(100)).toBe(1.96);
    const i = tInterval([1, 2, 3]);
    // sd 1, t 4.303, half-width 4.303 / sqrt(3)
    expect(i.mean).toBe(2);
    expect(i.hi - i.mean).toBeCloseTo(4.303 / Math.sqrt(3), 10);
    expect(i.mean - i.lo).toBeCloseTo(4.303 / Math.sqrt(3), 10);
    expect(Number.isNaN(tInterval([5]).lo)).toBe(true);
    expect(() => tQuantile975(0)).toThrow(/degrees of freedom/);
  });

  it('verdict: reproduced in most layers and against it in none; not reproduced when in none', () => {
    expect(verdictOf([at(0.1, 0.2), at(0.05, 0.3), at(-0.1, 0.1)])).toBe('reproduced');
    expect(verdictOf([at(0.1, 0.2), at(-0.3, -0.1), at(0.2, 0.4)])).toBe('mixed');
    expect(verdictOf([at(0.1, 0.2), at(-0.1, 0.1), at(-0.1, 0.1)])).toBe('mixed');
    expect(verdictOf([at(-0.1, 0.1), at(-0.2, 0.3)])).toBe('not reproduced');
    expect(verdictOf([at(-0.3, -0.1), at(-0.2, 0.3)])).toBe('not reproduced');
  });

  it('prints the finding line', () => {
    const line = findingLine(
      'colour',
      'mixed',
      [{ layer: 'conv3', difference: tInterval([0.1, 0.2, 0.3]) }],
      'colour share',
    );
    expect(line).toBe(
      `finding colour: mixed: conv3 ${formatInterval(tInterval([0.1, 0.2, 0.3]))} (colour share)`,
    );
    expect(line).toMatch(/^finding colour: mixed: conv3 \+0\.200 \[-0\.048, \+0\.448\] \(colour share\)$/);
  });

  it("random masks keep each kernel's sparsity and move the zeros", () => {
    const mask = tf.tensor([1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0], [3, 4]);
    const r = randomMasksLike(new Map([['k', mask]]), 11).get('k')!;
    expect(r.shape).toEqual([3, 4]);
    const v = Array.from(r.dataSync());
    expect(v.filter((x) => x === 0).length).toBe(7);
    expect(v.every((x) => x === 0 || x === 1)).toBe(true);
    const again = Array.from(
      randomMasksLike(new Map([['k', mask]]), 11)
        .get('k')!
        .dataSync(),
    );
    expect(again).toEqual(v); // seeded
  });
});
