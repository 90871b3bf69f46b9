import * as protoLoader from '@grpc/proto-loader';
import {
  checkpointToWire,
  decodeFloats,
  float16ToFloat32,
  float32ToFloat16,
  LOADER_OPTIONS,
  PROTO_FILE,
  runStartFromWire,
  runStartToWire,
  serviceDefinition,
} from '../src';
import type { RunSpec } from '@cm/contracts';

describe('float16', () => {
  it('round-trips representable values exactly and rounds others to nearest', () => {
    const src = new Float32Array([
      0,
      -0,
      1,
      -2.5,
      65504,
      6.103515625e-5,
      5.960464477539063e-8,
      0.1,
      1e6,
      -1e6,
      NaN,
      Infinity,
    ]);
    const back = float16ToFloat32(float32ToFloat16(src));
    expect(Array.from(back.slice(0, 7))).toEqual([
      0, -0, 1, -2.5, 65504, 6.103515625e-5, 5.960464477539063e-8,
    ]);
    expect(back[7]).toBeCloseTo(0.0999755859375, 10); // nearest half to 0.1
    expect(back[8]).toBe(Infinity);
    expect(back[9]).toBe(-Infinity);
    expect(back[10]).toBeNaN();
    expect(back[11]).toBe(Infinity);
  });
  it('keeps relative error below 2^-11 in the normal range', () => {
    const src = Float32Array.from({ length: 1000 }, (_, i) => (i - 500) * 0.37 + 0.013);
    const back = float16ToFloat32(float32ToFloat16(src));
    src.forEach((v, i) => expect(Math.abs(back[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 1e-7));
  });
});

describe('wire conversions', () => {
  const spec: RunSpec = {
    runId: 'run/1 with.dots',
    model: 'cnn',
    paradigm: 'standard',
    bundleId: '0123456789abcdef',
    layers: [
      { name: 'conv1', width: 8, kind: 'conv' },
      { name: 'fc', width: 4, kind: 'dense' },
    ],
    tags: { lr: '0.1' },
  };

  it('RunStart survives protobuf encoding', () => {
    const pkg = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
    expect(pkg['conceptmonitor.v1.ConceptMonitor']).toBeDefined();
    const def = serviceDefinition().Monitor;
    const bytes = def.requestSerialize(runStartToWire(spec, true));
    const decoded = def.requestDeserialize(bytes) as {
      body: string;
      runStart: Parameters<typeof runStartFromWire>[0];
    };
    expect(decoded.body).toBe('runStart');
    expect(decoded.runStart.resume).toBe(true);
    expect(runStartFromWire(decoded.runStart)).toEqual(spec);
  });

  it('chunks a layer under the chunk size and reassembles it bit-exactly (float32)', () => {
    const data = Float32Array.from({ length: 10 * 700 }, (_, i) => Math.sin(i));
    const msgs = checkpointToWire(
      { step: 3, layers: [{ layer: 'fc', shape: [10, 700], data }], metrics: { loss: 0.5 } },
      'float32',
      4096,
    );
    const chunks = msgs.filter((m) => 'chunk' in m).map((m) => ('chunk' in m ? m.chunk : undefined)!);
    expect(chunks.length).toBe(Math.ceil(data.byteLength / 4096));
    expect(chunks.every((c) => c.data.length <= 4096 && c.totalBytes === data.byteLength)).toBe(true);
    expect(chunks.map((c) => c.offset)).toEqual(chunks.map((_, i) => i * 4096));
    const last = msgs[msgs.length - 1];
    expect('checkpointEnd' in last && last.checkpointEnd).toEqual({ step: 3, metrics: { loss: 0.5 } });
    // through protobuf and back
    const def = serviceDefinition().Monitor;
    const joined = Buffer.concat(
      chunks.map(
        (c) =>
          (def.requestDeserialize(def.requestSerialize({ chunk: c })) as { chunk: { data: Buffer } }).chunk
            .data,
      ),
    );
    expect(Array.from(decodeFloats(joined, 'DTYPE_FLOAT32'))).toEqual(Array.from(data));
  });

  it('copies the data: the trainer may reuse its array', () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const msgs = checkpointToWire(
      { step: 0, layers: [{ layer: 'x', shape: [2, 2], data }], metrics: {} },
      'float32',
    );
    data[0] = 99;
    const c = 'chunk' in msgs[0] ? msgs[0].chunk : undefined;
    expect(decodeFloats(c!.data, 'DTYPE_FLOAT32')[0]).toBe(1);
  });

  it('float16 halves the bytes', () => {
    const data = new Float32Array(64).fill(0.5);
    const msgs = checkpointToWire(
      { step: 0, layers: [{ layer: 'x', shape: [8, 8], data }], metrics: {} },
      'float16',
    );
    const c = 'chunk' in msgs[0] ? msgs[0].chunk : undefined;
    expect(c!.totalBytes).toBe(128);
    expect(c!.dtype).toBe('DTYPE_FLOAT16');
    expect(Array.from(decodeFloats(c!.data, 'DTYPE_FLOAT16'))).toEqual(Array.from(data));
  });

  it('rejects a shape that does not match the data', () => {
    expect(() =>
      checkpointToWire(
        { step: 0, layers: [{ layer: 'x', shape: [3, 2], data: new Float32Array(5) }], metrics: {} },
        'float32',
      ),
    ).toThrow(/layer x: shape \[3, 2\] holds 6 values, data has 5/);
  });
});
