// Module-level alias: looking up the global `Math` in a hot loop is slow inside vm contexts (jest).
const { imul } = Math;

/**
 * mulberry32 (Tommy Ettinger, public domain): a seeded generator of uniform numbers in [0, 1).
 * Hand-written because every seeded thing in the project (the synthetic world, null calibrations,
 * fixtures) must give identical numbers on every machine and Node version, and the generator is a
 * 32-bit state advanced by a Weyl increment and mixed by two multiply-xorshift rounds.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
