import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { CmError, float16Table, readNpyHeader } from '@cm/core';
import { likelihoodBlock, slotBytesFor, type NpySource, type SoftmaxCacheRef } from './tasks';

export type { NpySource } from './tasks';

/**
 * P for (soft_)wpmi written straight into the shared WebAssembly memory that will hold
 * softmax(a P), and softmaxed there in place: P then costs its own size once, with no second
 * D x S array (the softmax cache). For callers that need P for nothing else (the CLI; a service
 * that keeps only the softmax). After the first similarity, the memory holds softmax(a P), so the
 * input serves every later call with the same `a` (a checkpoint's new Q) and refuses another `a`.
 *
 * float16 P (half the bytes on disk and while loading) is widened to float32 in place before the
 * softmax; the softmax itself is float32, as for float32 P. With `keepFloat16` P stays float16 in
 * memory (half of P's float32 size, no D x S float32 array at all): the softmax pass keeps each
 * image's max and 1 / sum, and every similarity rebuilds softmax(a P) one block of 256 concepts at
 * a time in its worker (the same values bit for bit, so the same similarity; one more pass of exps
 * per similarity). For big D: D = 50,000, S = 20,000 is 1.9 GiB instead of 3.7 GiB.
 */
export interface SoftmaxInput {
  readonly kind: 'softmax-input';
  readonly rows: number;
  readonly cols: number;
  readonly dtype: 'float32' | 'float16';
  /**
   * Write P's values here (row-major, rows x cols of dtype, little-endian) before the first
   * similarity. Absent for an input made by softmaxInputFromNpy: there the workers read the file.
   */
  readonly bytes?: Uint8Array;
  /** Worker slots the memory has room for: an executor of at most this many workers can use it. */
  readonly slots: number;
  /** P kept as float16 in memory, softmax rebuilt per block of concepts (allocSoftmaxInput's keepFloat16). */
  readonly keepFloat16: boolean;
}

interface InputState {
  sm: SoftmaxCacheRef;
  /** The file P is read from during the softmax, or undefined when the caller writes `bytes`. */
  source?: NpySource;
  /** Byte offset of the input values in the memory. */
  inputOffset: number;
  /** The `a` P was softmaxed with and the pass doing it, once started. */
  consumed?: { a: number; done: Promise<SoftmaxCacheRef> };
}

const states = new WeakMap<SoftmaxInput, InputState>();
let nextId = 1;

/** Ids of softmax memories made here; disjoint from similarity.ts's ids (kernels are cached by id). */
function freshId(): number {
  return 1e9 + nextId++;
}

export function isSoftmaxInput(x: unknown): x is SoftmaxInput {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'softmax-input';
}

/**
 * Allocate the softmax memory for a rows x cols P of `dtype` and return where to write P (or, with
 * `source`, where the softmax pass will read it: see softmaxInputFromNpy).
 * `slots`: the most workers that will use it (default: one per core, as the default pool has).
 */
export function allocSoftmaxInput(
  rows: number,
  cols: number,
  dtype: 'float32' | 'float16' = 'float32',
  options: { slots?: number; source?: NpySource; keepFloat16?: boolean } = {},
): SoftmaxInput {
  const slots = options.slots ?? Math.max(1, availableParallelism());
  if (options.keepFloat16 && dtype === 'float16') return allocFloat16Input(rows, cols, slots, options.source);
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1) {
    throw new CmError('INVALID_ARGUMENT', `probe scores P must be at least 1 x 1, got ${rows} x ${cols}`, {
      context: { rows, cols },
    });
  }
  const stride = Math.ceil(cols / 8) * 8;
  const slotBytes = slotBytesFor(rows);
  const smOffset = slots * slotBytes;
  const bytes = smOffset + rows * stride * 4;
  const pages = Math.ceil(bytes / 65536);
  if (pages > 65536) {
    throw new CmError(
      'RESOURCE_EXHAUSTED',
      `softmax of ${rows} x ${cols} probe scores needs ${(bytes / 2 ** 30).toFixed(2)} GiB, over the 4 GiB WebAssembly memory`,
      { context: { D: rows, S: cols }, hint: 'use fewer probe images or concepts' },
    );
  }
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const sm: SoftmaxCacheRef = {
    id: freshId(),
    memory,
    rows,
    cols,
    stride,
    smOffset,
    slotBytes,
    a: Number.NaN,
  };
  if (options.source) {
    const input: SoftmaxInput = { kind: 'softmax-input', rows, cols, dtype, slots, keepFloat16: false };
    states.set(input, { sm, inputOffset: smOffset, source: options.source });
    return input;
  }
  const valueBytes = rows * cols * (dtype === 'float16' ? 2 : 4);
  // float32: at the start of the softmax region (rows are moved up to their stride if cols is not
  // a multiple of 8); float16: at its end, so that widening row by row never overwrites unread rows.
  const inputOffset = dtype === 'float16' ? smOffset + rows * stride * 4 - valueBytes : smOffset;
  const input: SoftmaxInput = {
    kind: 'softmax-input',
    rows,
    cols,
    dtype,
    bytes: new Uint8Array(memory.buffer, inputOffset, valueBytes),
    slots,
    keepFloat16: false,
  };
  states.set(input, { sm, inputOffset });
  return input;
}

const align64 = (n: number): number => Math.ceil(n / 64) * 64;

/**
 * A float16 P kept as such: [worker slots][per-image (m, 1 / sum)][one block per worker][P float16].
 * A block holds likelihoodBlock(D) concepts of every image (and at least one whole row of P, for the
 * softmax pass).
 */
function allocFloat16Input(rows: number, cols: number, slots: number, source?: NpySource): SoftmaxInput {
  const slotBytes = slotBytesFor(rows);
  const statsOffset = slots * slotBytes;
  const blockOffset = align64(statsOffset + rows * 8);
  const blockBytes = align64(Math.max(rows * likelihoodBlock(rows) * 4, Math.ceil(cols / 4) * 16));
  const halfOffset = blockOffset + slots * blockBytes;
  const bytes = halfOffset + rows * cols * 2;
  const pages = Math.ceil(bytes / 65536);
  if (pages > 65536) {
    throw new CmError(
      'RESOURCE_EXHAUSTED',
      `float16 probe scores of ${rows} x ${cols} need ${(bytes / 2 ** 30).toFixed(2)} GiB, over the 4 GiB WebAssembly memory`,
      { context: { D: rows, S: cols }, hint: 'use fewer probe images or concepts' },
    );
  }
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const sm: SoftmaxCacheRef = {
    id: freshId(),
    memory,
    rows,
    cols,
    stride: cols,
    smOffset: halfOffset,
    slotBytes,
    a: Number.NaN,
    blocked: { halfOffset, statsOffset, blockOffset, blockBytes },
  };
  const input: SoftmaxInput = {
    kind: 'softmax-input',
    rows,
    cols,
    dtype: 'float16',
    bytes: source ? undefined : new Uint8Array(memory.buffer, halfOffset, rows * cols * 2),
    slots,
    keepFloat16: true,
  };
  states.set(input, { sm, inputOffset: halfOffset, source });
  return input;
}

/**
 * A SoftmaxInput for the P of an .npy file (float32 or float16, 2-D): only the header is read now;
 * the softmax pass reads each worker's rows from the file, softmaxes them and writes them to the
 * memory, so the file is read in parallel and P never exists as a whole in memory (only the softmax).
 */
export function softmaxInputFromNpy(
  file: string,
  options: { slots?: number; keepFloat16?: boolean } = {},
): SoftmaxInput {
  const h = readNpyHeader(file);
  if (h.shape.length !== 2 || (h.dtype !== 'float32' && h.dtype !== 'float16')) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${file}: probe scores P must be a 2-D float32 or float16 array, got ${h.dtype} (${h.shape.join(', ')})`,
      { context: { file }, hint: 'convert with arr.astype(numpy.float32)' },
    );
  }
  const size = statSync(file).size;
  if (size < h.dataStart + h.dataBytes) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${file}: not a readable .npy file: truncated data: shape (${h.shape.join(', ')}) needs ${h.dataBytes} bytes, file has ${size - h.dataStart}`,
      { context: { file }, hint: 'write it with numpy.save (little-endian, C order)' },
    );
  }
  return allocSoftmaxInput(h.shape[0], h.shape[1], h.dtype, {
    ...options,
    source: { file, dataStart: h.dataStart, dtype: h.dtype },
  });
}

/** The `a` an input was softmaxed with (in place), or undefined while it still holds P. */
export function consumedWith(input: SoftmaxInput): number | undefined {
  return stateOf(input).consumed?.a;
}

/**
 * P matrices whose values live in a softmax memory (allocSoftmaxReadyMatrix): on their first
 * (soft_)wpmi similarity they are softmaxed in place, so P and its softmax cost one D x S array.
 */
const readyMatrices = new WeakMap<Float32Array, SoftmaxInput>();

/**
 * A rows x cols float32 matrix stored where its softmax will be: for a long-lived P that is needed
 * only for wpmi / soft_wpmi (the concept service's bundle cache). Fill `data` with P (it is
 * checked for non-finite values like any P); the first similarity replaces it with softmax(a P),
 * after which the methods that read P itself (cos, cos_cubed, rank_reorder) refuse it. Before
 * that they work on a copy.
 */
export function allocSoftmaxReadyMatrix(
  rows: number,
  cols: number,
  options: { slots?: number } = {},
): { rows: number; cols: number; data: Float32Array } {
  const input = allocSoftmaxInput(rows, cols, 'float32', options);
  const bytes = input.bytes as Uint8Array;
  const data = new Float32Array(bytes.buffer, bytes.byteOffset, rows * cols);
  readyMatrices.set(data, input);
  return { rows, cols, data };
}

/** The SoftmaxInput behind a matrix made by allocSoftmaxReadyMatrix. */
export function softmaxReadyInput(data: Float32Array): SoftmaxInput | undefined {
  return readyMatrices.get(data);
}

function stateOf(input: SoftmaxInput): InputState {
  const s = states.get(input);
  if (!s) throw new CmError('INVALID_ARGUMENT', 'not a SoftmaxInput made by allocSoftmaxInput');
  return s;
}

/**
 * Put the input's values where the softmax pass reads them: float32 rows at `stride` floats with
 * zero padding; float16 widened to float32. Sequential (rows move within one buffer), in place.
 */
function layOut(input: SoftmaxInput, s: InputState): void {
  const { rows, cols } = input;
  const { sm } = s;
  const buf = sm.memory.buffer;
  const out = new Float32Array(buf, sm.smOffset, rows * sm.stride);
  if (input.dtype === 'float16') {
    const half = new Uint16Array(buf, s.inputOffset, rows * cols);
    const table = float16Table();
    const row = new Uint16Array(cols);
    // row i's output ends at or before row i+1's input starts (the input sits at the region's end)
    for (let i = 0; i < rows; i++) {
      row.set(half.subarray(i * cols, (i + 1) * cols));
      const o = i * sm.stride;
      for (let j = 0; j < cols; j++) out[o + j] = table[row[j]];
      out.fill(0, o + cols, o + sm.stride);
    }
    return;
  }
  if (sm.stride === cols) return;
  // last row first: a row's new place is at or after its old one, and after every earlier row's old place
  for (let i = rows - 1; i >= 0; i--) {
    out.copyWithin(i * sm.stride, i * cols, (i + 1) * cols);
    out.fill(0, i * sm.stride + cols, (i + 1) * sm.stride);
  }
}

/**
 * softmax(a P) of the input, computed in place on the first call (by `run`, which gets the cache
 * with `a` set and must softmax its rows in place), then reused. Another `a` is refused: P is gone.
 */
export function softmaxInPlace(
  input: SoftmaxInput,
  a: number,
  executorSize: number,
  run: (sm: SoftmaxCacheRef, source: NpySource | undefined) => Promise<void>,
): Promise<SoftmaxCacheRef> {
  const s = stateOf(input);
  if (executorSize > input.slots) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `the softmax memory has room for ${input.slots} workers, the executor has ${executorSize}`,
      { context: { slots: input.slots, workers: executorSize }, hint: 'pass { slots } to allocSoftmaxInput' },
    );
  }
  if (s.consumed) {
    if (s.consumed.a !== a) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `probe scores P were replaced by softmax(${s.consumed.a} P) in place; softmax(${a} P) needs P again`,
        { context: { a, consumedWith: s.consumed.a }, hint: 'load P as a matrix to use several values of a' },
      );
    }
    return s.consumed.done;
  }
  const sm: SoftmaxCacheRef = { ...s.sm, a };
  const done = (async () => {
    if (!s.source && !input.keepFloat16) layOut(input, s);
    await run(sm, s.source);
    return sm;
  })();
  s.consumed = { a, done };
  return done;
}
