import { mulberry32 as uniformStream } from '@cm/core';

// Module-level aliases: looking up the global `Math` in a hot loop costs microseconds per call
// inside vm contexts (jest), which made rendering 30x slower there.
const { floor, imul } = Math;

/**
 * Seeded pseudo-random numbers for the synthetic world.
 *
 * The world must be byte-identical for a given seed on every machine and Node version: the
 * numbers come from @cm/core's mulberry32 (period 2^32, ample for a few thousand small images).
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number;
  /** One element of a non-empty list, uniformly. */
  pick<T>(items: readonly T[]): T;
}

export function mulberry32(seed: number): Rng {
  const next = uniformStream(seed);
  return {
    next,
    int: (n) => floor(next() * n),
    range: (lo, hi) => lo + (hi - lo) * next(),
    pick: (items) => items[floor(next() * items.length)],
  };
}

/**
 * Derive an independent 32-bit seed from a user seed and a purpose label (FNV-1a over both), so
 * that the probe set, training sets and test sets drawn from the same user seed do not share a
 * random stream.
 */
export function deriveSeed(seed: number, purpose: string): number {
  let h = 0x811c9dc5;
  const text = `${seed >>> 0}:${purpose}`;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Fisher-Yates shuffle in place. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = items[i];
    items[i] = items[j];
    items[j] = t;
  }
  return items;
}
