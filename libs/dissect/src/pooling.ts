import { CmError, float16Table } from '@cm/core';
import type { LayerTensor, Matrix, PoolingMode } from './types';
import type { SharedBufferPool } from './buffer-pool';

export interface PoolOptions {
  /**
   * Put the D x N result on a SharedArrayBuffer of its own, where a DissectPool's workers read it
   * in place (no second copy by `toShared`). A dense [D, N] layer is then copied there, unless it
   * is on a SharedArrayBuffer of its own already (otherwise it is returned as is). The concept engine pools this way, so that the raw tensor can go once
   * the layer is pooled.
   */
  shared?: boolean;
  /**
   * With `shared`: the result's SharedArrayBuffer is taken from this pool (every value of it is
   * written), for the caller to give back once nothing reads the layer (the concept engine does,
   * after the checkpoint's ack: buffer-pool.ts says why).
   */
  buffers?: SharedBufferPool;
}

/** A Float32Array of n values on a SharedArrayBuffer of its own: from `opts.buffers` when given. */
function sharedFloats(n: number, opts: PoolOptions): Float32Array {
  return new Float32Array(opts.buffers ? opts.buffers.take(n * 4) : new SharedArrayBuffer(n * 4));
}

/**
 * A layer's raw output as D x N activations (method.md): a dense layer [D, N] is used as is; a
 * conv layer [D, H, W, C] (NHWC) is pooled over H and W, by mean ("avg") or maximum ("max").
 * Means are summed in float64 in spatial order and divided by H W (so any caller gets the same
 * float32 bits).
 */
export function poolLayer(t: LayerTensor, mode: PoolingMode = 'avg', opts: PoolOptions = {}): Matrix {
  const shape = t.shape;
  const count = shape.reduce((a, n) => a * n, 1);
  if (shape.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new CmError('INVALID_ARGUMENT', `layer tensor has a bad shape [${shape.join(', ')}]`, {
      context: { shape },
    });
  }
  if (t.data.length !== count) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `layer tensor of shape [${shape.join(', ')}] needs ${count} values, has ${t.data.length}`,
      { context: { shape, length: t.data.length } },
    );
  }
  if (mode !== 'avg' && mode !== 'max')
    throw new CmError('INVALID_ARGUMENT', `unknown pooling mode ${String(mode)} (avg or max)`, {
      context: { mode },
    });
  const alloc = (n: number): Float32Array => (opts.shared ? sharedFloats(n, opts) : new Float32Array(n));
  if (shape.length === 2) {
    if (!opts.shared || isWholeShared(t.data)) return { rows: shape[0], cols: shape[1], data: t.data };
    const data = alloc(count);
    data.set(t.data);
    return { rows: shape[0], cols: shape[1], data };
  }
  if (shape.length !== 4) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `layer tensor must be [D, N] (dense) or [D, H, W, C] (conv, NHWC), got [${shape.join(', ')}]`,
      { context: { shape } },
    );
  }
  const [D, H, W, C] = shape;
  const out = alloc(D * C);
  if (mode === 'avg') averageOver(t.data, out, D, H * W, C);
  else maximumOver(t.data, out, D, H * W, C);
  return { rows: D, cols: C, data: out };
}

/** out[d, c] = (sum over s of x[d, s, c], in float64) / hw: monomorphic loops on local variables (the hot part of a raw checkpoint). */
function averageOver(x: Float32Array, out: Float32Array, D: number, hw: number, C: number): void {
  const acc = new Float64Array(C);
  for (let d = 0; d < D; d++) {
    const base = d * hw * C;
    for (let c = 0; c < C; c++) acc[c] = 0 + x[base + c]; // 0 + : -0 sums to +0, as from a zero start
    for (let s = 1; s < hw; s++) {
      const row = base + s * C;
      for (let c = 0; c < C; c++) acc[c] += x[row + c];
    }
    const o = d * C;
    for (let c = 0; c < C; c++) out[o + c] = acc[c] / hw;
  }
}

function maximumOver(x: Float32Array, out: Float32Array, D: number, hw: number, C: number): void {
  const acc = new Float32Array(C);
  for (let d = 0; d < D; d++) {
    const base = d * hw * C;
    acc.fill(-Infinity);
    for (let s = 0; s < hw; s++) {
      const row = base + s * C;
      for (let c = 0; c < C; c++) {
        const v = x[row + c];
        if (v > acc[c]) acc[c] = v;
      }
    }
    out.set(acc, d * C);
  }
}

/** A Float32Array that is a whole SharedArrayBuffer (what `toShared` uses without a copy). */
function isWholeShared(data: Float32Array): boolean {
  return (
    data.buffer instanceof SharedArrayBuffer &&
    data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength
  );
}

/** The first NaN / +-Inf a PoolingStream met: its flat index in the raw tensor and its value. */
export interface NonFiniteValue {
  index: number;
  value: number;
}

/** What a PoolingStream is told about its bytes, beyond PoolOptions. */
export interface PoolingStreamOptions extends PoolOptions {
  /**
   * How the values are stored (default float32). float16 values are widened to float32 as they
   * arrive (exactly, as the wire decoder does), so the result is poolLayer's on the widened tensor.
   */
  dtype?: 'float32' | 'float16';
}

/**
 * poolLayer for a raw [D, H, W, C] float32 (or float16) tensor that arrives as little-endian bytes in order
 * (offset order = row-major order), pooled as it comes without the raw tensor ever being held:
 * each value is added to (or compared with) its image's accumulator in the order poolLayer's loops
 * take it (for each (d, c): s = 0, 1, ...), so the result has the same float32 bits. The bytes may
 * be split anywhere, inside a value too (the partial bytes are carried to the next write). The
 * first NaN / +-Inf is noted (`nonFinite`), for the caller to refuse the layer as it would the raw one.
 */
export class PoolingStream {
  readonly rows: number;
  readonly cols: number;
  private readonly hw: number;
  private readonly mode: PoolingMode;
  private readonly out: Float32Array;
  private readonly sum: Float64Array;
  private readonly max: Float32Array;
  /** Values taken so far (the flat index of the next one). */
  private taken = 0;
  private d = 0;
  private s = 0;
  private c = 0;
  /** Bytes of one value: 4 (float32) or 2 (float16). */
  private readonly valueBytes: number;
  /** float16 bits -> float32 (float16 only). */
  private readonly half?: Float32Array;
  /** Bytes of a value split by a write boundary (`carried` of them held in `carry`). */
  private readonly carry = new Uint8Array(4);
  private readonly carryValue = new Float32Array(this.carry.buffer);
  private readonly carryWidened = new Float32Array(1);
  private carried = 0;
  private scratch = new Float32Array(0);
  private firstNonFinite?: NonFiniteValue;

  constructor(shape: readonly number[], mode: PoolingMode = 'avg', opts: PoolingStreamOptions = {}) {
    if (shape.length !== 4 || shape.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `a pooling stream takes a [D, H, W, C] tensor, got [${shape.join(', ')}]`,
        {
          context: { shape },
        },
      );
    }
    if (mode !== 'avg' && mode !== 'max')
      throw new CmError('INVALID_ARGUMENT', `unknown pooling mode ${String(mode)} (avg or max)`, {
        context: { mode },
      });
    const dtype = opts.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'float16')
      throw new CmError(
        'INVALID_ARGUMENT',
        `a pooling stream takes float32 or float16, got ${String(dtype)}`,
        {
          context: { dtype },
        },
      );
    this.valueBytes = dtype === 'float16' ? 2 : 4;
    if (dtype === 'float16') this.half = float16Table();
    const [D, H, W, C] = shape;
    this.rows = D;
    this.cols = C;
    this.hw = H * W;
    this.mode = mode;
    this.out = opts.shared ? sharedFloats(D * C, opts) : new Float32Array(D * C);
    this.sum = new Float64Array(mode === 'avg' ? C : 0);
    this.max = new Float32Array(mode === 'max' ? C : 0).fill(-Infinity);
  }

  /** The first NaN / +-Inf taken so far, if any. */
  get nonFinite(): NonFiniteValue | undefined {
    return this.firstNonFinite;
  }

  /** Whether every value of the tensor was taken. */
  get complete(): boolean {
    return this.d === this.rows && this.carried === 0;
  }

  /** Take the next bytes of the tensor. */
  write(bytes: Uint8Array): void {
    const size = this.valueBytes;
    const half = this.half;
    let at = 0;
    if (this.carried > 0) {
      const n = Math.min(size - this.carried, bytes.length);
      this.carry.set(bytes.subarray(0, n), this.carried);
      this.carried += n;
      at = n;
      if (this.carried < size) return;
      this.carried = 0;
      if (half) {
        this.carryWidened[0] = half[this.carry[0] | (this.carry[1] << 8)];
        this.take(this.carryWidened, 1);
      } else this.take(this.carryValue, 1);
    }
    const whole = Math.floor((bytes.length - at) / size);
    if (whole > 0 && half) {
      // float16: widened through the table into an aligned Float32Array, value by value
      if (this.scratch.length < whole) this.scratch = new Float32Array(whole);
      const out = this.scratch;
      const start = bytes.byteOffset + at;
      if (start % 2 === 0) {
        const h = new Uint16Array(bytes.buffer, start, whole);
        for (let i = 0; i < whole; i++) out[i] = half[h[i]];
      } else for (let i = 0; i < whole; i++) out[i] = half[bytes[at + 2 * i] | (bytes[at + 2 * i + 1] << 8)];
      this.take(out, whole);
      at += whole * 2;
    } else if (whole > 0) {
      const start = bytes.byteOffset + at;
      if (start % 4 === 0) this.take(new Float32Array(bytes.buffer, start, whole), whole);
      else {
        // copied to an aligned Float32Array (a chunk's bytes may sit anywhere in the message buffer)
        if (this.scratch.length < whole) this.scratch = new Float32Array(whole);
        new Uint8Array(this.scratch.buffer, 0, whole * 4).set(bytes.subarray(at, at + whole * 4));
        this.take(this.scratch, whole);
      }
      at += whole * 4;
    }
    if (at < bytes.length) {
      if (this.d >= this.rows) this.overrun();
      this.carry.set(bytes.subarray(at), 0);
      this.carried = bytes.length - at;
    }
  }

  /** The pooled D x C matrix, once the whole tensor was taken. */
  finish(): Matrix {
    if (!this.complete)
      throw new CmError(
        'INVALID_ARGUMENT',
        `pooling stream ended after ${this.taken} of ${this.rows * this.hw * this.cols} values`,
        { context: { taken: this.taken } },
      );
    return { rows: this.rows, cols: this.cols, data: this.out };
  }

  /** x[0..n) as the next values: poolLayer's loop bodies, resumable at any value. */
  private take(x: Float32Array, n: number): void {
    const C = this.cols;
    const hw = this.hw;
    const avg = this.mode === 'avg';
    const sum = this.sum;
    const max = this.max;
    let { d, s, c } = this;
    let i = 0;
    while (i < n) {
      if (d >= this.rows) this.overrun();
      // the values of row (d, s) from c on that this write holds
      const m = Math.min(C - c, n - i);
      if (this.firstNonFinite === undefined) {
        for (let k = 0; k < m; k++) {
          const v = x[i + k];
          if (v - v !== 0) {
            this.firstNonFinite = { index: this.taken + k, value: v };
            break;
          }
        }
      }
      if (avg) for (let k = 0; k < m; k++) sum[c + k] += x[i + k];
      else
        for (let k = 0; k < m; k++) {
          const v = x[i + k];
          if (v > max[c + k]) max[c + k] = v;
        }
      i += m;
      c += m;
      this.taken += m;
      if (c === C) {
        c = 0;
        if (++s === hw) {
          const o = d * C;
          if (avg) {
            for (let k = 0; k < C; k++) this.out[o + k] = sum[k] / hw;
            sum.fill(0);
          } else {
            this.out.set(max, o);
            max.fill(-Infinity);
          }
          s = 0;
          d++;
        }
      }
    }
    this.d = d;
    this.s = s;
    this.c = c;
  }

  private overrun(): never {
    throw new CmError(
      'INVALID_ARGUMENT',
      `pooling stream got more than ${this.rows * this.hw * this.cols} values`,
      {
        context: { rows: this.rows, hw: this.hw, cols: this.cols },
      },
    );
  }
}
