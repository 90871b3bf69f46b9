import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import {
  encodeNpy,
  float16ToFloat32,
  float32ToFloat16,
  readFloatMatrix,
  readNpy,
  readNpyInto,
  writeNpy,
} from '../src';

const dir = mkdtempSync(join(tmpdir(), 'cm-npy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('.npy read straight into typed arrays', () => {
  it('round-trips every dtype, in plain and in shared memory', () => {
    const cases = [
      new Float32Array([1.5, -2, 3.25, 0, 7, 8]),
      new Float64Array([1e-300, 2, 3, 4, 5, 6]),
      new Uint8Array([0, 1, 2, 253, 254, 255]),
      new Int32Array([-1, 2, -3, 4, -5, 6]),
      new BigInt64Array([1n, -2n, 3n, 4n, 5n, 6n]),
      new Uint16Array([0x3c00, 0, 1, 2, 3, 4]),
    ];
    for (const data of cases) {
      const file = join(dir, `${data.constructor.name}.npy`);
      writeNpy(file, data, [2, 3]);
      for (const shared of [false, true]) {
        const back = readNpy(file, { shared });
        expect(back.shape).toEqual([2, 3]);
        expect(back.data.constructor).toBe(data.constructor);
        expect(Array.from(back.data as ArrayLike<number | bigint>)).toEqual(
          Array.from(data as ArrayLike<number | bigint>),
        );
        expect(back.data.buffer instanceof SharedArrayBuffer).toBe(shared);
      }
    }
  });

  it('converts float32 to float16 as numpy does, and float16 matrices back to float32', () => {
    // numpy: np.array([1, -2, 0.1, 65504, 1e-7, 70000, 2049, 2051], np.float32).astype(np.float16).view(np.uint16)
    const values = [1, -2, 0.1, 65504, 1e-7, 70000, 2049, 2051];
    const bits = float32ToFloat16(values);
    expect(Array.from(bits)).toEqual([0x3c00, 0xc000, 0x2e66, 0x7bff, 0x0002, 0x7c00, 0x6800, 0x6802]);
    expect(Array.from(float16ToFloat32(bits))).toEqual([
      1,
      -2,
      0.0999755859375,
      65504,
      2 ** -23,
      Infinity,
      2048,
      2052,
    ]);
    const file = join(dir, 'half.npy');
    writeNpy(file, float32ToFloat16([0.25, 0.5, 0.75, 1]), [2, 2]);
    const m = readFloatMatrix(file, 'P', { shared: true });
    expect(Array.from(m.data)).toEqual([0.25, 0.5, 0.75, 1]);
    expect(m.data.buffer instanceof SharedArrayBuffer).toBe(true);
  });

  it("readNpyInto fills the caller's buffer and passes every byte of the file on, in order", () => {
    const file = join(dir, 'into.npy');
    const data = new Float32Array(3 * 1000).map((_, i) => i / 7);
    // trailing bytes after the data are part of the file
    writeFileSync(file, Buffer.concat([encodeNpy(data, [3, 1000]), Buffer.from('tail')]));
    const target = new Uint8Array(new SharedArrayBuffer(12_000 + 16), 16);
    const hash = createHash('sha256');
    const h = readNpyInto(file, { allocate: () => target, onBytes: (chunk) => hash.update(chunk) });
    expect(h.shape).toEqual([3, 1000]);
    expect(Array.from(new Float32Array(target.buffer, 16, 3000))).toEqual(Array.from(data));
    expect(hash.digest('hex')).toBe(createHash('sha256').update(readFileSync(file)).digest('hex'));
    expect(() => readNpyInto(file, { allocate: () => new Uint8Array(10) })).toThrow(/needs 12000 bytes/);
  });

  it('reads a version 2.0 header and converts float64 matrices into shared float32', () => {
    const v1 = encodeNpy(new Float64Array([1, 2, 3, 4]), [2, 2]);
    // same header as version 2.0: 4-byte length
    const headerLen = v1.readUInt16LE(8);
    const v2 = Buffer.concat([v1.subarray(0, 6), Buffer.from([2, 0]), Buffer.alloc(4), v1.subarray(10)]);
    v2.writeUInt32LE(headerLen, 8);
    const file = join(dir, 'v2.npy');
    writeFileSync(file, v2);
    const m = readFloatMatrix(file, 'P', { shared: true });
    expect({ rows: m.rows, cols: m.cols, data: Array.from(m.data) }).toEqual({
      rows: 2,
      cols: 2,
      data: [1, 2, 3, 4],
    });
    expect(m.data.buffer instanceof SharedArrayBuffer).toBe(true);
  });

  it('names the file and the problem when it is truncated, not .npy, or missing', () => {
    const file = join(dir, 'short.npy');
    writeNpy(file, new Float32Array(12), [3, 4]);
    writeFileSync(file, readFileSync(file).subarray(0, 128 + 20));
    expect(() => readNpy(file)).toThrow(
      `${file}: not a readable .npy file: truncated data: shape (3, 4) needs 48 bytes, file has 20`,
    );
    const notNpy = join(dir, 'x.npy');
    writeFileSync(notNpy, 'hello');
    expect(() => readNpy(notNpy)).toThrow(/missing \\x93NUMPY magic/);
    expect(() => readNpy(join(dir, 'absent.npy'))).toThrow(/cannot read .*absent\.npy/);
  });
});
