/**
 * Pooling while the bytes arrive (issue 15): dissect's PoolingStream against the batch poolLayer,
 * bit for bit, over random chunk splits (inside a float too), and the engine's poolingStream
 * against poolReceivedLayer on the whole tensor: the same records, and a NaN / Inf refused with
 * the same message.
 */
import { CmError } from '@cm/core';
import type { CheckpointData, LayerActivations } from '@cm/contracts';
import { poolLayer, PoolingStream, type PoolingMode } from '@cm/dissect';
import { decodeFloats, float32ToFloat16 } from '@cm/protocol';
import { ConceptEngine, inlineDissector } from '../src';
import {
  makeTestBundles,
  rawConvActivations,
  testCheckpoint,
  testRunSpec,
  type TestBundles,
} from '../src/testing';

/** A seeded uniform [0, 1) generator (mulberry32): the splits and values are the same every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values of many magnitudes and signs, -0 included, so that summation order shows in the bits. */
function randomTensor(count: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: count }, () => {
    const r = rand();
    if (r < 0.05) return -0;
    if (r < 0.1) return 0;
    return (rand() - 0.5) * 10 ** Math.floor(rand() * 12 - 6);
  });
}

/** The tensor's little-endian bytes, cut at random places (inside floats too), every other piece at an odd byteOffset. */
function randomPieces(data: Float32Array | Uint16Array, rand: () => number, maxPiece: number): Uint8Array[] {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = Math.min(bytes.length - at, 1 + Math.floor(rand() * maxPiece));
    // a message buffer with the payload at offset 0 or 1 (read in place when aligned, else copied)
    const offset = pieces.length % 2;
    const holder = new Uint8Array(n + offset);
    holder.set(bytes.subarray(at, at + n), offset);
    pieces.push(holder.subarray(offset));
    at += n;
  }
  return pieces;
}

const bits = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer, x.byteOffset, x.length);

describe('PoolingStream', () => {
  const shapes = [
    [3, 2, 3, 5],
    [2, 1, 1, 7],
    [4, 2, 2, 16],
    [5, 3, 1, 1],
  ];
  for (const mode of ['avg', 'max'] as PoolingMode[]) {
    it(`${mode}: random splits give poolLayer's float32 bits`, () => {
      const rand = seeded(mode === 'avg' ? 11 : 12);
      for (const shape of shapes) {
        const data = randomTensor(
          shape.reduce((a, n) => a * n, 1),
          rand,
        );
        const batch = poolLayer({ shape, data }, mode);
        for (const maxPiece of [1, 3, 5, 9, 64, data.byteLength]) {
          const stream = new PoolingStream(shape, mode, { shared: true });
          for (const piece of randomPieces(data, rand, maxPiece)) stream.write(piece);
          expect(stream.complete).toBe(true);
          expect(stream.nonFinite).toBeUndefined();
          const q = stream.finish();
          expect([q.rows, q.cols]).toEqual([batch.rows, batch.cols]);
          expect(q.data.buffer).toBeInstanceOf(SharedArrayBuffer);
          expect(bits(q.data)).toEqual(bits(batch.data));
        }
      }
    });
  }

  for (const mode of ['avg', 'max'] as PoolingMode[]) {
    it(`${mode}, float16 bytes: random splits give poolLayer's bits on the tensor the wire decoder widens`, () => {
      const rand = seeded(mode === 'avg' ? 21 : 22);
      for (const shape of shapes) {
        const half = float32ToFloat16(
          randomTensor(
            shape.reduce((a, n) => a * n, 1),
            rand,
          ),
        );
        const widened = decodeFloats(new Uint8Array(half.buffer), 'DTYPE_FLOAT16');
        const batch = poolLayer({ shape, data: widened }, mode);
        for (const maxPiece of [1, 2, 3, 7, 64, half.byteLength]) {
          const stream = new PoolingStream(shape, mode, { shared: true, dtype: 'float16' });
          for (const piece of randomPieces(half, rand, maxPiece)) stream.write(piece);
          expect(stream.complete).toBe(true);
          const q = stream.finish();
          expect([q.rows, q.cols]).toEqual([batch.rows, batch.cols]);
          expect(bits(q.data)).toEqual(bits(batch.data));
        }
      }
      // the float32 stream of the same bytes read as float32 would differ: the dtype is used
      const shape = [2, 2, 2, 4];
      const half = float32ToFloat16(randomTensor(32, rand));
      const asFloat32 = new PoolingStream([2, 2, 1, 4], mode);
      asFloat32.write(new Uint8Array(half.buffer));
      const asHalf = new PoolingStream(shape, mode, { dtype: 'float16' });
      asHalf.write(new Uint8Array(half.buffer));
      expect(bits(asHalf.finish().data)).not.toEqual(bits(asFloat32.finish().data));
    });
  }

  it('float16: notes the first NaN / Inf by its flat index, across a split inside it', () => {
    const values = randomTensor(96, seeded(4));
    values[61] = Number.NaN;
    values[70] = Number.NEGATIVE_INFINITY;
    const half = float32ToFloat16(values);
    const bytes = new Uint8Array(half.buffer);
    const stream = new PoolingStream([4, 2, 2, 6], 'avg', { dtype: 'float16' });
    stream.write(bytes.subarray(0, 61 * 2 + 1)); // the NaN's first byte
    expect(stream.nonFinite).toBeUndefined();
    stream.write(bytes.subarray(61 * 2 + 1));
    expect(stream.nonFinite?.index).toBe(61);
    expect(stream.nonFinite?.value).toBeNaN();
  });

  it('notes the first NaN / Inf by its flat index, across a split inside it', () => {
    const shape = [4, 2, 2, 6];
    const data = randomTensor(96, seeded(3));
    data[61] = Number.NaN;
    data[70] = Number.POSITIVE_INFINITY;
    const stream = new PoolingStream(shape, 'max');
    const bytes = new Uint8Array(data.buffer);
    stream.write(bytes.subarray(0, 61 * 4 + 2)); // the NaN's first two bytes
    expect(stream.nonFinite).toBeUndefined();
    stream.write(bytes.subarray(61 * 4 + 2));
    expect(stream.nonFinite?.index).toBe(61);
    expect(stream.nonFinite?.value).toBeNaN();
    const inf = new PoolingStream(shape, 'avg');
    data[61] = 1;
    inf.write(new Uint8Array(data.buffer));
    expect(inf.nonFinite).toEqual({ index: 70, value: Number.POSITIVE_INFINITY });
  });

  it('refuses what it cannot pool, more values than the shape, and an early finish', () => {
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return e instanceof CmError ? `${e.code}: ${e.message}` : String(e);
      }
      return undefined;
    };
    expect(code(() => new PoolingStream([4, 6]))).toMatch(
      /^INVALID_ARGUMENT: a pooling stream takes a \[D, H, W, C\]/,
    );
    expect(code(() => new PoolingStream([1, 1, 1, 2], 'sum' as PoolingMode))).toMatch(
      /unknown pooling mode sum/,
    );
    expect(code(() => new PoolingStream([1, 1, 1, 2], 'avg', { dtype: 'float64' as 'float32' }))).toMatch(
      /takes float32 or float16, got float64/,
    );
    const h = new PoolingStream([1, 1, 1, 2], 'avg', { dtype: 'float16' });
    h.write(new Uint8Array(3));
    expect(code(() => h.finish())).toMatch(/pooling stream ended after 1 of 2 values/);
    expect(code(() => h.write(new Uint8Array(3)))).toMatch(/more than 2 values/);
    const s = new PoolingStream([1, 1, 1, 2]);
    s.write(new Uint8Array(6));
    expect(code(() => s.finish())).toMatch(/pooling stream ended after 1 of 2 values/);
    expect(code(() => s.write(new Uint8Array(4)))).toMatch(/more than 2 values/);
  });
});

describe('ConceptEngine.poolingStream', () => {
  let tb: TestBundles;
  beforeAll(async () => {
    tb = await makeTestBundles();
  });
  afterAll(() => tb.cleanup());

  const newEngine = (): ConceptEngine =>
    new ConceptEngine({
      bundles: tb.bundles,
      dissector: inlineDissector(),
      now: () => new Date('2025-01-02T03:04:05.000Z'),
    });

  /** Raw conv1 max-pooled and conv2 avg-pooled (as the concept service receives them), a dense third. */
  const rawCheckpoint = (step: number): CheckpointData => ({
    ...testCheckpoint(tb.space, step),
    layers: [
      { ...rawConvActivations(tb.space, 'conv1', 8, step), pooling: 'max' },
      rawConvActivations(tb.space, 'conv2', 12, step),
      testCheckpoint(tb.space, step).layers[2],
    ],
  });

  /**
   * What the session does with a layer's chunks: streamed when the engine takes it so, else
   * poolReceivedLayer; `half`: the layer came as these float16 values (`layer` holds them widened).
   */
  function receive(
    engine: ConceptEngine,
    runId: string,
    step: number,
    layer: LayerActivations,
    seed: number,
    half?: Uint16Array,
  ) {
    const stream = engine.poolingStream(runId, step, half ? { ...layer, dtype: 'float16' } : layer);
    if (!stream) return { streamed: false, layer: engine.poolReceivedLayer(runId, step, layer) };
    for (const piece of randomPieces(half ?? layer.data, seeded(seed), 97)) stream.write(piece);
    return { streamed: true, layer: stream.finish() };
  }

  /** Checkpoint `cp` with the layers pooled whole on one engine, as streamed on the other: the same records. */
  async function expectSameRecords(
    [whole, streaming]: ConceptEngine[],
    cp: CheckpointData,
    byWhole: LayerActivations[],
    got: { layer: LayerActivations }[],
  ): Promise<void> {
    const a = await whole.processCheckpoint('ps', { ...cp, layers: byWhole }, { release: true });
    const b = await streaming.processCheckpoint(
      'ps',
      { ...cp, layers: got.map((g) => g.layer) },
      { release: true },
    );
    expect(b.records).toEqual(a.records);
  }

  async function message(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(CmError);
      return `${(e as CmError).code}: ${(e as CmError).message}`;
    }
    throw new Error('expected an error');
  }

  it('streams raw conv layers to the records poolReceivedLayer gives; a dense layer is left to it', async () => {
    const [whole, streaming] = [newEngine(), newEngine()];
    for (const e of [whole, streaming]) await e.startRun(testRunSpec('ps', tb.bundleId));
    for (const step of [0, 1]) {
      const cp = rawCheckpoint(step);
      const byWhole = cp.layers.map((l) => whole.poolReceivedLayer('ps', step, l));
      const got = cp.layers.map((l, i) => receive(streaming, 'ps', step, l, 100 * step + i));
      expect(got.map((g) => g.streamed)).toEqual([true, true, false]);
      got.forEach((g, i) => {
        expect(g.layer.shape).toEqual(byWhole[i].shape);
        expect(bits(g.layer.data)).toEqual(bits(byWhole[i].data));
      });
      await expectSameRecords([whole, streaming], cp, byWhole, got);
    }
    // float16 on the wire: streamed, the records of poolReceivedLayer on the decoded layer
    const cp = rawCheckpoint(2);
    const halves = cp.layers.map((l) => float32ToFloat16(l.data));
    const decoded = cp.layers.map((l, i) => ({
      ...l,
      data: decodeFloats(new Uint8Array(halves[i].buffer), 'DTYPE_FLOAT16'),
    }));
    const byWhole = decoded.map((l) => whole.poolReceivedLayer('ps', 2, l));
    const got = decoded.map((l, i) => receive(streaming, 'ps', 2, l, 300 + i, halves[i]));
    expect(got.map((g) => g.streamed)).toEqual([true, true, false]);
    got.forEach((g, i) => expect(bits(g.layer.data)).toEqual(bits(byWhole[i].data)));
    await expectSameRecords([whole, streaming], cp, byWhole, got);
    // undeclared, or not of the declared width: assembled and refused as before
    const conv1 = rawCheckpoint(3).layers[0];
    expect(streaming.poolingStream('ps', 3, { ...conv1, layer: 'nope' })).toBeUndefined();
    expect(streaming.poolingStream('ps', 3, { ...conv1, shape: [conv1.shape[0], 2, 2, 9] })).toBeUndefined();
  });

  for (const [which, value] of [
    [0, Number.NaN],
    [1, Number.NaN],
    [1, Number.NEGATIVE_INFINITY],
  ] as const) {
    it(`${value} in the middle of a later chunk of ${which === 0 ? 'a max' : 'an avg'}-pooled layer: refused with today's message`, async () => {
      const [whole, streaming] = [newEngine(), newEngine()];
      for (const e of [whole, streaming]) await e.startRun(testRunSpec('bad', tb.bundleId));
      const cp = rawCheckpoint(3);
      const data = cp.layers[which].data;
      const at = Math.floor(data.length * 0.7) + 1;
      data[at] = value;
      data[at + 5] = Number.NaN; // a later one is not the one named
      const expected = await message(
        whole.processCheckpoint(
          'bad',
          { ...cp, layers: cp.layers.map((l) => whole.poolReceivedLayer('bad', 3, l)) },
          { release: true },
        ),
      );
      expect(expected).toMatch(new RegExp(`value ${String(value)} at index ${at} \\(\\[`));
      const got = cp.layers.map((l, i) => receive(streaming, 'bad', 3, l, i));
      expect(got[which].streamed).toBe(true);
      expect(
        await message(
          streaming.processCheckpoint('bad', { ...cp, layers: got.map((g) => g.layer) }, { release: true }),
        ),
      ).toBe(expected);
    });
  }
});
