import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeNpy, readFloatMatrix, readNpy, writeNpy } from '../src';

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
