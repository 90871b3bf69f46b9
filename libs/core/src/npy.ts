import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { CmError } from './errors';

/**
 * NumPy .npy reader and writer (format versions 1.0-3.0, little-endian, C order).
 * Hand-written because the npm readers (npyjs and friends) neither write files nor report
 * malformed headers with a usable message, and the format is a 10-byte preamble, a Python-dict
 * header and raw data: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 */
export type NpyDtype = 'float32' | 'float64' | 'uint8' | 'int32' | 'int64' | 'float16';
export type NpyData = Float32Array | Float64Array | Uint8Array | Int32Array | BigInt64Array | Uint16Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

const DESCR_TO_DTYPE: Record<string, NpyDtype> = {
  '<f4': 'float32',
  '<f8': 'float64',
  '|u1': 'uint8',
  '<u1': 'uint8',
  '<i4': 'int32',
  '<i8': 'int64',
  '<f2': 'float16',
};
const DTYPE_TO_DESCR: Record<NpyDtype, string> = {
  float32: '<f4',
  float64: '<f8',
  uint8: '|u1',
  int32: '<i4',
  int64: '<i8',
  float16: '<f2',
};
const BYTES: Record<NpyDtype, number> = { float32: 4, float64: 8, uint8: 1, int32: 4, int64: 8, float16: 2 };
const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

function corrupt(source: string, why: string): CmError {
  return new CmError('INVALID_ARGUMENT', `${source}: not a readable .npy file: ${why}`, {
    context: { file: source },
    hint: 'write it with numpy.save (little-endian, C order)',
  });
}

/** Where an .npy file's data starts and what it holds (from its preamble and header). */
export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  /** Byte offset of the data in the file. */
  dataStart: number;
  /** Bytes of data the shape needs. */
  dataBytes: number;
}

/**
 * Parse the preamble and header of .npy bytes (the first bytes of a file are enough: the header
 * ends within 10 + 65535 bytes for version 1, within its stated length for versions 2 and 3).
 */
export function parseNpyHeader(b: Buffer, source = '<buffer>'): NpyHeader {
  if (b.length < 10 || !b.subarray(0, 6).equals(MAGIC)) throw corrupt(source, 'missing \\x93NUMPY magic');
  const major = b[6];
  let headerLen: number;
  let offset: number;
  if (major === 1) {
    headerLen = b.readUInt16LE(8);
    offset = 10;
  } else if (major === 2 || major === 3) {
    if (b.length < 12) throw corrupt(source, 'truncated header');
    headerLen = b.readUInt32LE(8);
    offset = 12;
  } else {
    throw corrupt(source, `unsupported format version ${major}`);
  }
  if (offset + headerLen > b.length) throw corrupt(source, 'truncated header');
  const header = b.subarray(offset, offset + headerLen).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw corrupt(source, `header is not a numpy dict: ${header.trim()}`);
  }
  const dtype = DESCR_TO_DTYPE[descr];
  if (!dtype)
    throw corrupt(source, `dtype ${descr} is not supported (float32, float64, float16, uint8, int32, int64)`);
  if (fortran === 'True')
    throw corrupt(source, 'Fortran-ordered arrays are not supported (use np.ascontiguousarray)');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s));
  if (shape.some((n) => !Number.isInteger(n) || n < 0)) throw corrupt(source, `bad shape (${shapeText})`);
  const count = shape.reduce((a, n) => a * n, 1);
  return { dtype, shape, dataStart: offset + headerLen, dataBytes: count * BYTES[dtype] };
}

function truncated(source: string, h: NpyHeader, have: number): CmError {
  return corrupt(
    source,
    `truncated data: shape (${h.shape.join(', ')}) needs ${h.dataBytes} bytes, file has ${have}`,
  );
}

function typedView(dtype: NpyDtype, ab: ArrayBufferLike): NpyData {
  return dtype === 'float32'
    ? new Float32Array(ab)
    : dtype === 'float64'
      ? new Float64Array(ab)
      : dtype === 'uint8'
        ? new Uint8Array(ab)
        : dtype === 'int32'
          ? new Int32Array(ab)
          : dtype === 'int64'
            ? new BigInt64Array(ab)
            : new Uint16Array(ab);
}

/** Parse .npy bytes. `source` names the file in error messages. */
export function parseNpy(buf: Uint8Array, source = '<buffer>'): NpyArray {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const h = parseNpyHeader(b, source);
  if (b.length - h.dataStart < h.dataBytes) throw truncated(source, h, b.length - h.dataStart);
  // Copy into a fresh, aligned buffer: typed arrays need offsets that are multiples of the item size.
  const bytes = new Uint8Array(h.dataBytes);
  bytes.set(b.subarray(h.dataStart, h.dataStart + h.dataBytes));
  return { dtype: h.dtype, shape: h.shape, data: typedView(h.dtype, bytes.buffer) };
}

function openForRead(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (e) {
    throw new CmError('NOT_FOUND', `cannot read ${file}: ${(e as Error).message}`, {
      context: { file },
      cause: e,
    });
  }
}

/** Read exactly `length` bytes at `position` into `into` (readSync may return short counts). */
function readFully(fd: number, into: Uint8Array, position: number): number {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(into.length - done, 1 << 30), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export interface ReadNpyOptions {
  /**
   * Put the data in a SharedArrayBuffer (worker threads read it in place; libs/dissect uses it
   * without another copy).
   */
  shared?: boolean;
}

/** Bytes read (and handed to `onBytes`) at a time by readNpyInto. */
const READ_CHUNK = 8 << 20;

export interface ReadNpyIntoOptions {
  /**
   * Where the data goes, given the header: a view of at least `h.dataBytes` bytes, filled from the
   * file directly (no intermediate buffer). May throw to refuse the file (wrong dtype or shape).
   */
  allocate(h: NpyHeader): Uint8Array;
  /**
   * Called with every byte of the file, in order (preamble and header, data, any bytes after the
   * data), in chunks of at most 8 MiB: to hash a file while reading it, without a second copy.
   */
  onBytes?(chunk: Uint8Array): void;
}

/**
 * Read an .npy file's data into memory the caller provides (see ReadNpyIntoOptions) and return its
 * header. The file is read once, in chunks, straight into the destination.
 */
export function readNpyInto(file: string, options: ReadNpyIntoOptions): NpyHeader {
  const fd = openForRead(file);
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(65_536 + 12, Math.max(12, size)));
    const got = readFully(fd, head, 0);
    const h = parseNpyHeader(head.subarray(0, got), file);
    const into = options.allocate(h);
    if (into.byteLength < h.dataBytes) {
      throw new CmError(
        'INTERNAL',
        `readNpyInto: ${file} needs ${h.dataBytes} bytes, the destination has ${into.byteLength}`,
        { context: { file } },
      );
    }
    const onBytes = options.onBytes;
    onBytes?.(head.subarray(0, Math.min(got, h.dataStart)));
    let have = 0;
    if (!onBytes) have = readFully(fd, into.subarray(0, h.dataBytes), h.dataStart);
    else {
      while (have < h.dataBytes) {
        const chunk = into.subarray(have, Math.min(h.dataBytes, have + READ_CHUNK));
        const n = readFully(fd, chunk, h.dataStart + have);
        onBytes(chunk.subarray(0, n));
        have += n;
        if (n < chunk.length) break;
      }
    }
    if (have < h.dataBytes) throw truncated(file, h, have);
    if (onBytes) {
      // anything after the data is part of the file's bytes (its hash)
      const tail = Buffer.alloc(Math.min(READ_CHUNK, Math.max(0, size - h.dataStart - h.dataBytes)));
      for (let at = h.dataStart + h.dataBytes; tail.length > 0;) {
        const n = readSync(fd, tail, 0, tail.length, at);
        if (n === 0) break;
        onBytes(tail.subarray(0, n));
        at += n;
      }
    }
    return h;
  } finally {
    closeSync(fd);
  }
}

/**
 * Read an .npy file. The data goes from the file straight into its typed array (one read of the
 * header, one of the data): no intermediate buffer of the whole file, so a big P costs its own size
 * in memory, not twice that.
 */
export function readNpy(file: string, options: ReadNpyOptions = {}): NpyArray {
  let buffer: ArrayBuffer | SharedArrayBuffer | undefined;
  const h = readNpyInto(file, {
    allocate: (header) => {
      buffer = options.shared ? new SharedArrayBuffer(header.dataBytes) : new ArrayBuffer(header.dataBytes);
      return new Uint8Array(buffer);
    },
  });
  return { dtype: h.dtype, shape: h.shape, data: typedView(h.dtype, buffer as ArrayBufferLike) };
}

/** The header of an .npy file (reads its first bytes only). */
export function readNpyHeader(file: string): NpyHeader {
  const fd = openForRead(file);
  try {
    const head = Buffer.alloc(Math.min(65_536 + 12, Math.max(12, fstatSync(fd).size)));
    return parseNpyHeader(head.subarray(0, readFully(fd, head, 0)), file);
  } finally {
    closeSync(fd);
  }
}

let halfTable: Float32Array | undefined;
/** float16 bit pattern -> float32 value, all 65536 of them (256 KiB, built on first use). */
export function float16Table(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exp = (h >> 10) & 0x1f;
      const frac = h & 0x3ff;
      halfTable[h] =
        exp === 0
          ? sign * frac * 2 ** -24
          : exp === 31
            ? frac
              ? NaN
              : sign * Infinity
            : sign * (1 + frac / 1024) * 2 ** (exp - 15);
    }
  }
  return halfTable;
}

/** float16 bit patterns -> float32 values (into `out`, same length). */
export function float16ToFloat32<T extends Float32Array<ArrayBufferLike>>(
  half: Uint16Array<ArrayBufferLike>,
  out: T = new Float32Array(half.length) as T,
): T {
  const table = float16Table();
  for (let i = 0; i < half.length; i++) out[i] = table[half[i]];
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The float16 bit pattern nearest to x (round half to even, as numpy's astype(float16)). */
export function toFloat16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && half & 1) ? half + 1 : half);
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  return sign | (rem > 0x1000 || (rem === 0x1000 && half & 1) ? half + 1 : half);
}

/** float32 values -> float16 bit patterns (numpy's astype(float16)). */
export function float32ToFloat16<T extends Uint16Array<ArrayBufferLike>>(
  values: ArrayLike<number>,
  out: T = new Uint16Array(values.length) as T,
): T {
  for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(values[i]);
  return out;
}

export function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'float16';
}

/** The .npy preamble and header (version 1.0) of an array: what precedes its raw data. */
function encodeHeader(count: number, dataLength: number, shape: readonly number[], dtype: NpyDtype): Buffer {
  if (count !== dataLength) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `encodeNpy: shape (${shape.join(', ')}) holds ${count} values, data has ${dataLength}`,
    );
  }
  const shapeText = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '${DTYPE_TO_DESCR[dtype]}', 'fortran_order': False, 'shape': (${shapeText}), }`;
  // Pad so that magic + length + header + '\n' is a multiple of 64 bytes, as numpy does.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  MAGIC.copy(pre, 0);
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1')]);
}

/** Serialise to .npy (version 1.0). Deterministic: same input, same bytes. */
export function encodeNpy(data: NpyData, shape: readonly number[], dtype: NpyDtype = dtypeOf(data)): Buffer {
  const count = shape.reduce((a, n) => a * n, 1);
  return Buffer.concat([
    encodeHeader(count, data.length, shape, dtype),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength),
  ]);
}

/** Write an .npy file: the header, then the array's own bytes (no copy of the data). */
export function writeNpy(file: string, data: NpyData, shape: readonly number[]): void {
  const count = shape.reduce((a, n) => a * n, 1);
  const header = encodeHeader(count, data.length, shape, dtypeOf(data));
  let fd: number;
  try {
    fd = openSync(file, 'w');
  } catch (e) {
    throw new CmError('NOT_FOUND', `cannot write ${file}: ${(e as Error).message}`, {
      context: { file },
      cause: e,
    });
  }
  try {
    writeSync(fd, header);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let done = 0; done < bytes.length;)
      done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
  } finally {
    closeSync(fd);
  }
}

/**
 * Read a 2-D float matrix (float32, or float64 / float16 converted), naming the file and the expected role in
 * errors. `shared` puts it in a SharedArrayBuffer (see ReadNpyOptions).
 */
export function readFloatMatrix(
  file: string,
  role: string,
  options: ReadNpyOptions = {},
): { rows: number; cols: number; data: Float32Array } {
  const arr = readNpy(file, options);
  if (arr.shape.length !== 2) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${file}: ${role} must be 2-D, got shape (${arr.shape.join(', ')})`,
      { context: { file } },
    );
  }
  let data: Float32Array;
  if (arr.dtype === 'float32') data = arr.data as Float32Array;
  else if (arr.dtype === 'float64') {
    const wide = arr.data as Float64Array;
    const bytes = wide.length * 4;
    data = new Float32Array(options.shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
    data.set(wide);
  } else if (arr.dtype === 'float16') {
    const bytes = arr.data.length * 4;
    data = float16ToFloat32(
      arr.data as Uint16Array,
      new Float32Array(options.shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes)),
    );
  } else {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${file}: ${role} must be float32, float64 or float16, got ${arr.dtype}`,
      {
        context: { file },
        hint: 'convert with arr.astype(numpy.float32)',
      },
    );
  }
  return { rows: arr.shape[0], cols: arr.shape[1], data };
}
