import { SharedBufferPool } from '../src/buffer-pool';
import { dissectOn, similarityBuffers } from '../src/dissect';
import { inlineExecutor } from '../src/executor';
import { fitProjection, type ConceptSpace, type Matrix } from '../src';
import { uniform } from './helpers';

/** D probe images, S concepts, random P and unit concept embeddings. */
function makeSpace(D: number, S: number): ConceptSpace {
  const d = 4;
  const conceptEmbeddings: Matrix = { rows: S, cols: d, data: uniform(S * d, 5).map((v) => v - 0.5) };
  return {
    concepts: Array.from({ length: S }, (_, j) => `concept_${j}`),
    categories: Array.from({ length: S }, () => 'object'),
    probeScores: { rows: D, cols: S, data: uniform(D * S, 3) },
    conceptEmbeddings,
    projection: fitProjection(conceptEmbeddings),
  };
}

/** N neurons, neuron k following concept (k * 3 + shift) % S of P plus noise. */
function plantedQ(space: ConceptSpace, N: number, shift = 0): Matrix {
  const { rows: D, cols: S, data: P } = space.probeScores;
  const noise = uniform(D * N, 11 + shift);
  const data = new Float32Array(D * N);
  for (let i = 0; i < D; i++)
    for (let k = 0; k < N; k++) data[i * N + k] = P[i * S + ((k * 3 + shift) % S)] + 0.2 * noise[i * N + k];
  return { rows: D, cols: N, data };
}

describe('SharedBufferPool', () => {
  it('gives a buffer back to the next take of the same size, and a new one for another size', () => {
    const pool = new SharedBufferPool();
    const a = pool.take(1024);
    expect(a).toBeInstanceOf(SharedArrayBuffer);
    expect(a.byteLength).toBe(1024);
    expect(pool.give(a)).toBe(true);
    expect(pool.idleBytes).toBe(1024);
    expect(pool.take(1024)).toBe(a);
    expect(pool.idleBytes).toBe(0);
    const other = pool.take(2048);
    expect(other).not.toBe(a);
    expect(other.byteLength).toBe(2048);
    expect({ reused: pool.reused, allocated: pool.allocated }).toEqual({ reused: 1, allocated: 2 });
    pool.clear();
  });

  it('never hands one buffer to two takers: buffers out at once are distinct until given back', () => {
    const pool = new SharedBufferPool();
    // two checkpoints in flight, each with the same layer sizes
    const first = [pool.take(4096), pool.take(4096), pool.take(512)];
    const second = [pool.take(4096), pool.take(4096), pool.take(512)];
    expect(new Set([...first, ...second]).size).toBe(6);
    for (const b of first) pool.give(b);
    // the second is still out: a third checkpoint gets the first's buffers, never the second's
    const third = [pool.take(4096), pool.take(4096), pool.take(512)];
    expect(new Set(third)).toEqual(new Set(first));
    for (const b of third) expect(second).not.toContain(b);
    expect(pool.isTaken(second[0])).toBe(true);
    pool.clear();
  });

  it('ignores a second give and a buffer it did not make, so neither can be taken twice', () => {
    const pool = new SharedBufferPool();
    const a = pool.take(64);
    expect(pool.give(a)).toBe(true);
    expect(pool.give(a)).toBe(false);
    expect(pool.give(new SharedArrayBuffer(64))).toBe(false);
    expect(pool.idleBytes).toBe(64);
    const x = pool.take(64);
    const y = pool.take(64);
    expect(x).toBe(a);
    expect(y).not.toBe(a);
    pool.clear();
  });

  it('drops idle buffers after idleMs and beyond maxIdleBytes (the longest idle first)', async () => {
    const timed = new SharedBufferPool({ idleMs: 20 });
    const a = timed.take(256);
    timed.give(a);
    await new Promise((r) => setTimeout(r, 60));
    expect(timed.idleBytes).toBe(0);
    expect(timed.take(256)).not.toBe(a);

    const capped = new SharedBufferPool({ maxIdleBytes: 1000 });
    const old = capped.take(600);
    const recent = capped.take(600);
    capped.give(old);
    capped.give(recent); // 1200 idle > 1000: the longer idle one goes
    expect(capped.idleBytes).toBe(600);
    expect(capped.take(600)).toBe(recent);
    capped.clear();

    const none = new SharedBufferPool({ idleMs: 0 });
    const b = none.take(32);
    expect(none.give(b)).toBe(true);
    expect(none.idleBytes).toBe(0);
    expect(none.take(32)).not.toBe(b);
  });

  it('refuses a bad size or option', () => {
    expect(() => new SharedBufferPool().take(-1)).toThrow('bad size');
    expect(() => new SharedBufferPool({ idleMs: -1 })).toThrow('must be >= 0');
  });
});

describe('dissectOn and its similarity buffers', () => {
  it('a second dissection of the same width reuses the N x S matrix of the first and gives the same labels', async () => {
    const space = makeSpace(150, 40);
    const Q = plantedQ(space, 24);
    const before = { reused: similarityBuffers.reused, idle: similarityBuffers.idleBytes };
    const first = await dissectOn(inlineExecutor, space, Q, { threshold: 0 });
    // given back once read: idle for the next dissection
    expect(similarityBuffers.idleBytes).toBeGreaterThanOrEqual(before.idle + 24 * 40 * 4);
    // a different layer in between writes the same buffer with other values
    await dissectOn(inlineExecutor, space, plantedQ(space, 24, 7), { threshold: 0 });
    const again = await dissectOn(inlineExecutor, space, Q, { threshold: 0 });
    expect(similarityBuffers.reused).toBeGreaterThanOrEqual(before.reused + 2);
    expect(again.labels).toEqual(first.labels);
    expect(again.metrics).toEqual(first.metrics);
  });
});
