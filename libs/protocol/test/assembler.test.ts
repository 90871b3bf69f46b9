import { CmError } from '@cm/core';
import {
  checkpointToWire,
  LayerAssembly,
  layerHeldBytes,
  serviceDefinition,
  validateChunkHeader,
  type WireActivationChunk,
} from '../src';

const chunksOf = (data: Float32Array, shape: number[], dtype: 'float32' | 'float16', chunkBytes = 1024) =>
  checkpointToWire(
    { step: 7, layers: [{ layer: 'fc', shape, data, pooling: 'max' }], metrics: {} },
    dtype,
    chunkBytes,
  )
    .map((m) => ('chunk' in m ? m.chunk : undefined))
    .filter((c): c is WireActivationChunk => c !== undefined);

function assemble(chunks: WireActivationChunk[]): LayerAssembly {
  const a = new LayerAssembly(chunks[0]);
  validateChunkHeader(chunks[0], 'fc');
  chunks.forEach((c, i) => expect(a.append(c, 'fc')).toBe(i === chunks.length - 1));
  return a;
}

const expectInvalid = (f: () => unknown, message: RegExp): void => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CmError);
    expect((e as CmError).code).toBe('INVALID_ARGUMENT');
    expect((e as CmError).message).toMatch(message);
    return;
  }
  throw new Error(`expected INVALID_ARGUMENT matching ${message}`);
};

describe('LayerAssembly', () => {
  const data = Float32Array.from({ length: 12 * 100 }, (_, i) => Math.cos(i) * 3);

  it('reassembles the encoder output bit-exactly, through protobuf and back (float32)', () => {
    const def = serviceDefinition().Monitor;
    const chunks = chunksOf(data, [12, 100], 'float32').map(
      (c) =>
        (def.requestDeserialize(def.requestSerialize({ chunk: c })) as { chunk: WireActivationChunk }).chunk,
    );
    expect(chunks.length).toBe(Math.ceil(data.byteLength / 1024));
    const layer = assemble(chunks).toActivations();
    expect(layer).toMatchObject({ layer: 'fc', shape: [12, 100], pooling: 'max' });
    expect(Array.from(layer.data)).toEqual(Array.from(data));
  });

  it('widens float16 and counts its float32 copy in the held bytes', () => {
    const chunks = chunksOf(data, [12, 100], 'float16');
    expect(validateChunkHeader(chunks[0], 'fc')).toBe(data.length * 2);
    const layer = assemble(chunks).toActivations();
    layer.data.forEach((v, i) =>
      expect(Math.abs(v - data[i])).toBeLessThanOrEqual(Math.abs(data[i]) * 2 ** -11),
    );
    expect(layerHeldBytes(2400, 'DTYPE_FLOAT16')).toBe(7200);
    expect(layerHeldBytes(4800, 'DTYPE_FLOAT32')).toBe(4800);
  });

  it('refuses a chunk out of order, a gap, and a repeat', () => {
    const chunks = chunksOf(data, [12, 100], 'float32');
    const a = new LayerAssembly(chunks[0]);
    expectInvalid(
      () => a.append(chunks[1], 'L'),
      /^L: chunk offset 1024, expected 0 \(chunks must be sent in order\)$/,
    );
    a.append(chunks[0], 'L');
    expectInvalid(() => a.append(chunks[0], 'L'), /chunk offset 0, expected 1024/);
    expectInvalid(() => a.append(chunks[2], 'L'), /chunk offset 2048, expected 1024/);
    expect(a.received).toBe(1024);
  });

  it('refuses bytes beyond total_bytes', () => {
    const [only] = chunksOf(new Float32Array(8), [2, 4], 'float32');
    const a = new LayerAssembly(only);
    expectInvalid(
      () => a.append({ ...only, data: Buffer.alloc(only.data.length + 4) }, 'L'),
      /^L: chunks exceed total_bytes 32$/,
    );
  });

  it('refuses a header that changes within the layer', () => {
    const chunks = chunksOf(data, [12, 100], 'float32');
    for (const change of [
      { shape: [100, 12] },
      { dtype: 'DTYPE_FLOAT16' as const },
      { pooling: 'POOLING_AVG' as const },
      { totalBytes: 1 },
    ]) {
      const a = new LayerAssembly(chunks[0]);
      a.append(chunks[0], 'L');
      expectInvalid(
        () => a.append({ ...chunks[1], ...change }, 'L'),
        /chunk header \(shape, dtype, pooling, total_bytes\) changed within the layer/,
      );
    }
  });

  it('refuses to hand out an incomplete layer', () => {
    const chunks = chunksOf(data, [12, 100], 'float32');
    const a = new LayerAssembly(chunks[0]);
    a.append(chunks[0], 'L');
    expect(a.complete).toBe(false);
    expectInvalid(() => a.toActivations(), /layer fc: 1024 of 4800 bytes received/);
  });

  it('with a sink: passes each checked payload on in order, holds no buffer, keeps every check', () => {
    // split anywhere, inside a float too (this encoder splits at whole values, other senders may not)
    const [header] = chunksOf(data, [12, 100], 'float32');
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const cuts = [0, 7, 1001, 1002, 2999, 4800];
    const chunks = cuts
      .slice(1)
      .map((end, i) => ({ ...header, offset: cuts[i], data: bytes.subarray(cuts[i], end) }));
    const seen: Uint8Array[] = [];
    const a = new LayerAssembly(chunks[0], (b) => seen.push(Uint8Array.from(b)));
    expectInvalid(() => a.append(chunks[1], 'L'), /chunk offset 7, expected 0/);
    expect(seen).toHaveLength(0);
    chunks.forEach((c, i) => expect(a.append(c, 'L')).toBe(i === chunks.length - 1));
    expectInvalid(
      () => a.append({ ...chunks[0], offset: a.received }, 'L'),
      /^L: chunks exceed total_bytes 4800$/,
    );
    expect(seen).toHaveLength(chunks.length);
    expect(Buffer.compare(Buffer.concat(seen), bytes)).toBe(0);
    expectInvalid(() => a.toActivations(), /layer fc: its bytes went to a sink, not assembled here/);
  });
});

describe('validateChunkHeader', () => {
  const [c] = chunksOf(new Float32Array(8), [2, 4], 'float32');
  it('returns the byte size product(shape) x sizeof(dtype)', () => {
    expect(validateChunkHeader(c, 'L')).toBe(32);
    expect(validateChunkHeader({ ...c, dtype: 'DTYPE_UNSPECIFIED' }, 'L')).toBe(32);
  });
  it('refuses total_bytes that do not match the shape', () => {
    expectInvalid(
      () => validateChunkHeader({ ...c, totalBytes: 30 }, 'L'),
      /^L: total_bytes 30 does not match shape \[2, 4\] \(32 bytes\)$/,
    );
  });
  it('refuses enum values this end does not know', () => {
    expectInvalid(
      () => validateChunkHeader({ ...c, dtype: 7 as unknown as WireActivationChunk['dtype'] }, 'L'),
      /dtype 7 is not float32 or float16/,
    );
    expectInvalid(
      () => validateChunkHeader({ ...c, pooling: 9 as unknown as WireActivationChunk['pooling'] }, 'L'),
      /pooling 9 is not avg or max/,
    );
  });
});
