/** Seeded per (seed, neuron) so results do not depend on how work is split across workers. */
export { mulberry32 } from '@cm/core';

export function neuronSeed(seed: number, neuron: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(neuron + 1, 0xc2b2ae35)) >>> 0;
}
