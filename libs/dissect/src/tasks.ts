import { closeSync, openSync, readSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { CmError, float16Table } from '@cm/core';
import { matmulGraph } from './graphs';
import {
  instantiateLikelihood,
  instantiateSoftmax,
  type LikelihoodFn,
  type SoftmaxKernels,
} from './wasm-kernel';
import { mulberry32, neuronSeed } from './random';

/**
 * The heavy steps of a dissection, as tasks that run the same way in a worker thread (pool.ts) or
 * in the calling thread (InlineExecutor). Big arrays travel as SharedArrayBuffers, never copied.
 * Each task covers a range (of images, neurons or concepts) so that a pool splits it across cores.
 */

/** A float32 matrix in shared memory. */
export interface SharedMatrixRef {
  id: number;
  rows: number;
  cols: number;
  buffer: SharedArrayBuffer;
}

/**
 * softmax(a * P) of one P, cached in a shared WebAssembly memory that the SIMD kernel reads in
 * place: rows of `stride` floats (S padded to a multiple of 8, padding is zero) at `smOffset`,
 * preceded by one scratch slot per worker.
 */
export interface SoftmaxCacheRef {
  id: number;
  memory: WebAssembly.Memory;
  rows: number;
  cols: number;
  stride: number;
  smOffset: number;
  slotBytes: number;
  a: number;
  /**
   * Set for a P kept as float16 (softmax-input.ts, `keepFloat16`): the memory holds P itself, not
   * its softmax; the softmax pass computes each image's (max, 1 / sum) and the likelihood pass
   * rebuilds softmax(a P) one block of concepts at a time in its worker's block (the same values
   * bit for bit). `stride` and `smOffset` are then unused.
   */
  blocked?: BlockedSoftmax;
}

/** Where a float16 P and what its softmax is rebuilt from lie in the memory (byte offsets). */
export interface BlockedSoftmax {
  /** P: rows x cols float16, row-major. */
  halfOffset: number;
  /** Per image two float32: m = max a P[i, :] and 1 / sum exp(a P[i, :] - m). */
  statsOffset: number;
  /** Slot s's block (likelihoodBlock(D) columns of every image, float32) at blockOffset + s * blockBytes. */
  blockOffset: number;
  blockBytes: number;
}

/** An .npy file's data: where the softmax pass reads P's rows (each worker its own, in parallel). */
export interface NpySource {
  file: string;
  /** Byte offset of the data in the file. */
  dataStart: number;
  dtype: 'float32' | 'float16';
}

export type Task =
  | {
      kind: 'softmax';
      /**
       * Where P is read: a shared matrix; 'in-place' (P's rows are in the cache already); or an
       * .npy file, whose rows the task reads itself (see softmax-input.ts).
       */
      p: SharedMatrixRef | 'in-place' | NpySource;
      sm: SoftmaxCacheRef;
      rowStart: number;
      rowEnd: number;
    }
  | { kind: 'topk'; q: SharedMatrixRef; k: number; colStart: number; colEnd: number; out: SharedArrayBuffer }
  | {
      kind: 'likelihood';
      sm: SoftmaxCacheRef;
      neurons: number;
      topK: number;
      idx: SharedArrayBuffer;
      c: Float64Array;
      p: Float64Array;
      lambda: number;
      colStart: number;
      colEnd: number;
      out: SharedArrayBuffer;
      /** S float64: logp[j] = logsumexp_k L[k, j] - log N, so that L = sim + lambda * logp can be recovered. */
      logp: SharedArrayBuffer;
    }
  | {
      kind: 'cosine';
      cubed: boolean;
      minNorm: number;
      p: SharedMatrixRef;
      q: SharedMatrixRef;
      colStart: number;
      colEnd: number;
      out: SharedArrayBuffer;
    }
  | {
      kind: 'rank_reorder';
      p: SharedMatrixRef;
      q: SharedMatrixRef;
      power: number;
      topFraction: number;
      scaleP: number;
      seed: number;
      colStart: number;
      colEnd: number;
      out: SharedArrayBuffer;
    };

/**
 * Concepts per block of the likelihood pass (a neuron's top images are read within a block of D
 * rows of this many concepts). Measured on this 2-core machine: at D = 5000 256 was the best of
 * 64..2048; at D = 10,000 (a 10 MB block at 256) 64 took ~14 % less CPU than 256 over ten
 * interleaved and sequential runs each (docs/dissect.md). The block never changes a result:
 * every concept is computed alone.
 */
export function likelihoodBlock(images: number): number {
  return images >= 8192 ? 64 : 256;
}
/** The largest block (what slot scratch space is sized for). */
export const LIKELIHOOD_BLOCK = 256;
/** A float32 chunk product must stay above float32's smallest normal number (~1.2e-38). */
const CHUNK_FLOOR = 1e-36;
/** A float64 product must stay above float64's smallest normal number (~2.2e-308). */
const SEGMENT_FLOOR = 1e-300;

/** Bytes of one worker's scratch slot in a softmax cache memory for a given D. */
export function slotBytesFor(images: number): number {
  // offsets (4 B per rank) + c/p splats (32 B per rank) + q (4 B per concept) + out and tot (8 B each per concept)
  const bytes = images * 36 + LIKELIHOOD_BLOCK * 20;
  return Math.ceil(bytes / 64) * 64;
}

// ---- thread-local state -------------------------------------------------------------------

const sessions = new Map<string, Promise<ort.InferenceSession>>();
function session(name: string, build: () => Uint8Array): Promise<ort.InferenceSession> {
  let s = sessions.get(name);
  if (!s) {
    // One ORT thread per task: the pool already runs one task per core.
    s = ort.InferenceSession.create(build(), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
    sessions.set(name, s);
  }
  return s;
}

/** Kernel instances per softmax cache id; only the latest few are kept so old memories can be freed. */
const kernels = new Map<number, Promise<LikelihoodFn>>();
function kernelFor(sm: SoftmaxCacheRef): Promise<LikelihoodFn> {
  let k = kernels.get(sm.id);
  if (!k) {
    k = instantiateLikelihood(sm.memory);
    kernels.set(sm.id, k);
    while (kernels.size > 2) kernels.delete(kernels.keys().next().value as number);
  }
  return k;
}

/** Softmax kernel instances per softmax cache id (as kernels above). */
const softmaxKernels = new Map<number, Promise<SoftmaxKernels>>();
function softmaxKernelFor(sm: SoftmaxCacheRef): Promise<SoftmaxKernels> {
  let k = softmaxKernels.get(sm.id);
  if (!k) {
    k = instantiateSoftmax(sm.memory);
    softmaxKernels.set(sm.id, k);
    while (softmaxKernels.size > 2) softmaxKernels.delete(softmaxKernels.keys().next().value as number);
  }
  return k;
}

// ---- tasks --------------------------------------------------------------------------------

/**
 * How a task runs its dense steps: onnxruntime (worker threads) or plain loops (the calling
 * thread, small inputs only). Why two: onnxruntime-node builds its output arrays in Node's main
 * realm, and under jest (a separate realm) its own `instanceof Float32Array` check then fails, so
 * the calling thread avoids it; the loops are only used below INLINE_WORK_LIMIT (similarity.ts).
 */
export type DenseEngine = 'onnxruntime' | 'loops';

/** P's rows as read in place: the first non-finite value of a block, reported as validateInputs would. */
function checkFiniteRows(block: Float32Array, cols: number, stride: number, firstRow: number): void {
  for (let i = 0; i < block.length; i++) {
    const v = block[i];
    if (v - v !== 0) {
      const row = firstRow + Math.floor(i / stride);
      const col = i % stride;
      if (col >= cols) continue;
      throw new CmError(
        'INVALID_ARGUMENT',
        `probe scores P has a non-finite value (${v}) at row ${row}, column ${col}`,
        { context: { role: 'probe scores P', row, col } },
      );
    }
  }
}

/**
 * Rows of Sm = softmax(a P) per image, in blocks of rows. P is a shared matrix, the cache's own
 * rows (in place) or an .npy file read block by block (float16 widened on the way). Workers put
 * the rows at their place in Sm and softmax them there with the SIMD kernel (softmax.wat, which
 * also finds NaN / Inf); the calling thread uses float64 loops.
 */
async function softmaxTask(
  t: Extract<Task, { kind: 'softmax' }>,
  engine: DenseEngine,
  slot: number,
): Promise<void> {
  const { sm } = t;
  if (sm.blocked) return rowStatsTask(t, sm.blocked, slot);
  const S = sm.cols;
  const src = t.p;
  const fromFile = typeof src === 'object' && 'file' in src ? src : undefined;
  const inPlace = src === 'in-place';
  const Sm = new Float32Array(sm.memory.buffer, sm.smOffset, sm.rows * sm.stride);
  const checked = inPlace || fromFile !== undefined;
  // the source rows: P (row stride S) or Sm itself (row stride sm.stride, zero padding)
  const P = typeof src === 'object' && 'buffer' in src ? new Float32Array(src.buffer) : Sm;
  const inStride = inPlace ? sm.stride : S;
  const blockRows = Math.max(1, Math.min(t.rowEnd - t.rowStart, Math.floor((8 << 20) / S)));
  const block = new Float32Array(blockRows * S);
  const reader = fromFile ? blockReader(fromFile, S, blockRows) : undefined;
  /** Rows r0 .. r0 + n of P into `into` (n x S), checked for non-finite values when not validated before. */
  const load = (r0: number, n: number, into: Float32Array): void => {
    if (reader) reader.read(r0, n, into);
    else if (inStride === S) into.set(P.subarray(r0 * S, (r0 + n) * S));
    else
      for (let i = 0; i < n; i++) into.set(P.subarray((r0 + i) * inStride, (r0 + i) * inStride + S), i * S);
    if (checked) checkFiniteRows(into, S, S, r0);
  };
  try {
    if (engine === 'loops') {
      const row = new Float64Array(S);
      const one = block.subarray(0, S);
      for (let i = t.rowStart; i < t.rowEnd; i++) {
        load(i, 1, one);
        let max = -Infinity;
        for (let j = 0; j < S; j++) max = Math.max(max, (row[j] = sm.a * one[j]));
        let sum = 0;
        for (let j = 0; j < S; j++) sum += row[j] = Math.exp(row[j] - max);
        for (let j = 0; j < S; j++) Sm[i * sm.stride + j] = row[j] / sum;
      }
      return;
    }
    // workers: rows are put at their place in Sm, then softmaxed there by the SIMD kernel
    const { softmaxRows } = await softmaxKernelFor(sm);
    const rowBytes = sm.stride * 4;
    const direct = fromFile && fromFile.dtype === 'float32' && sm.stride === S;
    for (let r0 = t.rowStart; r0 < t.rowEnd; r0 += blockRows) {
      const n = Math.min(blockRows, t.rowEnd - r0);
      if (direct && reader)
        reader.readBytes(r0, n, new Uint8Array(sm.memory.buffer, sm.smOffset + r0 * rowBytes, n * S * 4));
      else if (!inPlace) {
        const input = n === blockRows ? block : block.subarray(0, n * S);
        if (reader) reader.read(r0, n, input);
        else input.set(P.subarray(r0 * S, (r0 + n) * S));
        for (let i = 0; i < n; i++) Sm.set(input.subarray(i * S, (i + 1) * S), (r0 + i) * sm.stride);
      }
      const bad = softmaxRows(sm.smOffset + r0 * rowBytes, n, S, rowBytes, Math.fround(sm.a));
      if (bad >= 0)
        checkFiniteRows(Sm.subarray((r0 + bad) * sm.stride, (r0 + bad) * sm.stride + S), S, S, r0 + bad);
    }
  } finally {
    reader?.close();
  }
}

/** float16 bits -> float32 for n values (the table has all 65,536). */
function widen(
  half: Uint16Array,
  h0: number,
  out: Float32Array,
  o0: number,
  n: number,
  table: Float32Array,
): void {
  for (let j = 0; j < n; j++) out[o0 + j] = table[half[h0 + j]];
}

/**
 * The softmax pass of a float16 P kept as such (sm.blocked): the rows in range are read from the
 * file into the memory when P comes from one, widened into this worker's block a few rows at a
 * time, and their (m, 1 / sum) computed by row_stats (softmax.wat), which also finds NaN / Inf.
 * P stays float16; nothing D x S in float32 exists.
 */
async function rowStatsTask(
  t: Extract<Task, { kind: 'softmax' }>,
  bl: BlockedSoftmax,
  slot: number,
): Promise<void> {
  const { sm } = t;
  const S = sm.cols;
  const buf = sm.memory.buffer;
  const src = t.p;
  const fromFile = typeof src === 'object' && 'file' in src ? src : undefined;
  if (fromFile) {
    const reader = blockReader(fromFile, S, 1);
    try {
      const rows = t.rowEnd - t.rowStart;
      reader.readBytes(
        t.rowStart,
        rows,
        new Uint8Array(buf, bl.halfOffset + t.rowStart * S * 2, rows * S * 2),
      );
    } finally {
      reader.close();
    }
  }
  const { rowStats } = await softmaxKernelFor(sm);
  const half = new Uint16Array(buf, bl.halfOffset, sm.rows * S);
  const table = float16Table();
  const rowBytes = Math.ceil(S / 4) * 16;
  const blockAddr = bl.blockOffset + slot * bl.blockBytes;
  const perPass = Math.max(1, Math.floor(bl.blockBytes / rowBytes));
  const block = new Float32Array(buf, blockAddr, (perPass * rowBytes) / 4);
  for (let r0 = t.rowStart; r0 < t.rowEnd; r0 += perPass) {
    const n = Math.min(perPass, t.rowEnd - r0);
    for (let i = 0; i < n; i++) widen(half, (r0 + i) * S, block, (i * rowBytes) / 4, S, table);
    const bad = rowStats(blockAddr, n, S, rowBytes, Math.fround(sm.a), bl.statsOffset + r0 * 8);
    if (bad >= 0)
      checkFiniteRows(block.subarray((bad * rowBytes) / 4, (bad * rowBytes) / 4 + S), S, S, r0 + bad);
  }
}

/** Reads blocks of rows of an .npy file's float32 / float16 matrix as float32. */
function blockReader(
  source: NpySource,
  cols: number,
  maxRows: number,
): {
  read(r0: number, n: number, into: Float32Array): void;
  readBytes(r0: number, n: number, target: Uint8Array): void;
  close(): void;
} {
  const bytesPerValue = source.dtype === 'float16' ? 2 : 4;
  const fd = openSync(source.file, 'r');
  const half = source.dtype === 'float16' ? new Uint16Array(maxRows * cols) : undefined;
  const table = half ? float16Table() : undefined;
  /** Bytes of rows r0 .. r0 + n as stored in the file, into `target`. */
  const readBytes = (r0: number, n: number, target: Uint8Array): void => {
    const at = source.dataStart + r0 * cols * bytesPerValue;
    let done = 0;
    while (done < target.length) {
      const got = readSync(fd, target, done, target.length - done, at + done);
      if (got === 0) {
        throw new CmError(
          'INVALID_ARGUMENT',
          `${source.file}: truncated data: rows ${r0}..${r0 + n} of probe scores P end past the end of the file`,
          { context: { file: source.file }, hint: 'write it with numpy.save' },
        );
      }
      done += got;
    }
  };
  return {
    readBytes,
    read(r0, n, into) {
      if (!half || !table)
        return readBytes(r0, n, new Uint8Array(into.buffer, into.byteOffset, n * cols * 4));
      readBytes(r0, n, new Uint8Array(half.buffer, 0, n * cols * 2));
      for (let i = 0; i < n * cols; i++) into[i] = table[half[i]];
    },
    close: () => closeSync(fd),
  };
}

/**
 * For each neuron (column of Q) in range: its top-k images by activation, largest first, as torch.topk
 * returns them; equal activations keep the lower image index first. Neurons are gathered 16 at a
 * time so that reading Q (row-major, images x neurons) touches each cache line once.
 */
function topkTask(t: Extract<Task, { kind: 'topk' }>): void {
  const { q, k } = t;
  const D = q.rows;
  const N = q.cols;
  const Q = new Float32Array(q.buffer);
  const out = new Int32Array(t.out);
  const GROUP = 16;
  const columns = new Float32Array(GROUP * D);
  const order = new Int32Array(D);
  const scratch = new Float32Array(D);
  for (let n0 = t.colStart; n0 < t.colEnd; n0 += GROUP) {
    const g = Math.min(GROUP, t.colEnd - n0);
    for (let i = 0; i < D; i++) {
      const row = i * N + n0;
      for (let c = 0; c < g; c++) columns[c * D + i] = Q[row + c];
    }
    for (let c = 0; c < g; c++) {
      selectTopK(columns.subarray(c * D, (c + 1) * D), order, k, scratch);
      out.set(order.subarray(0, k), (n0 + c) * k);
    }
  }
}

/** The k-th largest value (1-based k) of values, by quickselect on a scratch copy. */
function kthLargest(values: Float32Array, k: number, scratch: Float32Array): number {
  const a = scratch.subarray(0, values.length);
  a.set(values);
  let lo = 0;
  let hi = a.length - 1;
  const target = k - 1; // position in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else break;
  }
  return a[target];
}

/**
 * Put the indices of the k largest values, in descending order (ties: lower index first), in
 * order[0..k). Quickselect finds the k-th value, one pass collects the winners, and only those k are sorted.
 */
export function selectTopK(
  values: Float32Array,
  order: Int32Array,
  k: number,
  scratch = new Float32Array(values.length),
): void {
  const D = values.length;
  const kth = kthLargest(values, k, scratch);
  let n = 0;
  for (let i = 0; i < D; i++) if (values[i] > kth) order[n++] = i;
  for (let i = 0; i < D && n < k; i++) if (values[i] === kth) order[n++] = i;
  const top = Array.from(order.subarray(0, k));
  top.sort((x, y) => values[y] - values[x] || x - y);
  order.set(top);
}

/**
 * (soft_)wpmi over a range of concepts, for all neurons: L[k, j] = sum_r log(c_r + p_r Sm[i_r, j])
 * as log of a product (SIMD kernel), then logp[j] = logsumexp_k L[k, j] - log N and
 * sim = L - lambda logp. A block of concepts is finished before the next, so no second pass.
 * logp is also written out (S float64, negligible next to N x S), so callers can recover the
 * neuron's own likelihood L = sim + lambda logp without a second pass (tie-breaks, calibration).
 */
async function likelihoodTask(t: Extract<Task, { kind: 'likelihood' }>, slot: number): Promise<void> {
  const { sm, topK: K, neurons: N } = t;
  const S = sm.cols;
  const B = likelihoodBlock(sm.rows);
  const kernel = await kernelFor(sm);
  const mem = sm.memory.buffer;
  const base = slot * sm.slotBytes;
  const offsAddr = base;
  const cpAddr = base + sm.rows * 4;
  const qAddr = cpAddr + sm.rows * 32;
  const outAddr = qAddr + B * 4;
  const totAddr = outAddr + B * 8;
  const offs = new Int32Array(mem, offsAddr, K);
  const cp = new Float32Array(mem, cpAddr, K * 8);
  const logs = new Float64Array(mem, outAddr, B);
  const total = new Float64Array(mem, totAddr, B);
  let minC = Infinity;
  for (let r = 0; r < K; r++) {
    cp.fill(t.c[r], r * 8, r * 8 + 4);
    cp.fill(t.p[r], r * 8 + 4, r * 8 + 8);
    minC = Math.min(minC, Math.fround(t.c[r]));
  }
  // Each factor is >= c_r (Sm >= 0) and <= 1 + min_prob, so products only risk underflow.
  const chunk =
    minC > 0 && minC < 1 ? Math.max(1, Math.min(K, Math.floor(Math.log(CHUNK_FLOOR) / Math.log(minC)))) : K;
  const segment =
    minC > 0 && minC < 1 ? Math.max(1, Math.min(K, Math.floor(Math.log(SEGMENT_FLOOR) / Math.log(minC)))) : K;
  const idx = new Int32Array(t.idx);
  const out = new Float32Array(t.out);
  const logpOut = new Float64Array(t.logp);
  const bl = sm.blocked;
  // a float16 P kept as such: each block of Sm is rebuilt in this worker's block (rows of B floats)
  const rebuild = bl ? await blockRebuilder(sm, bl, slot) : undefined;
  const rowBytes = bl ? B * 4 : sm.stride * 4;
  const L = new Float64Array(N * B);
  const logN = Math.log(N);
  const singleSegment = segment >= K;
  for (let j0 = t.colStart; j0 < t.colEnd; j0 += B) {
    const width = Math.min(B, t.colEnd - j0);
    const groups = Math.ceil(width / 8);
    const smAddr = rebuild ? rebuild(j0, width) : sm.smOffset + j0 * 4;
    total.fill(0);
    for (let k = 0; k < N; k++) {
      for (let r = 0; r < K; r++) offs[r] = idx[k * K + r] * rowBytes;
      const Lk = k * B;
      for (let r0 = 0; r0 < K; r0 += segment) {
        // exp(L[k, j]) is the product itself: with one segment the kernel sums it into `total`, and logsumexp needs no exp
        kernel(
          smAddr,
          groups,
          offsAddr,
          cpAddr,
          r0,
          Math.min(K, r0 + segment),
          chunk,
          qAddr,
          outAddr,
          singleSegment ? totAddr : 0,
        );
        if (r0 === 0) L.set(logs.subarray(0, width), Lk);
        else for (let j = 0; j < width; j++) L[Lk + j] += logs[j];
      }
    }
    for (let j = 0; j < width; j++) {
      let logp: number;
      if (singleSegment && total[j] > 0) {
        logp = Math.log(total[j]) - logN;
      } else {
        let max = -Infinity;
        for (let k = 0; k < N; k++) if (L[k * B + j] > max) max = L[k * B + j];
        let sum = 0;
        for (let k = 0; k < N; k++) sum += Math.exp(L[k * B + j] - max);
        logp = max + Math.log(sum) - logN;
      }
      logpOut[j0 + j] = logp;
      total[j] = t.lambda * logp;
    }
    for (let k = 0; k < N; k++) {
      const row = k * S + j0;
      for (let j = 0; j < width; j++) out[row + j] = L[k * B + j] - total[j];
    }
  }
}

/**
 * For a float16 P kept as such: a function that writes softmax(a P)[:, j0 .. j0 + width) into the
 * worker's block (rows of likelihoodBlock(D) floats), widening P and applying each image's (m, 1 / sum)
 * with exp_scale, and returns the block's address: softmax_rows' values for those columns.
 */
async function blockRebuilder(
  sm: SoftmaxCacheRef,
  bl: BlockedSoftmax,
  slot: number,
): Promise<(j0: number, width: number) => number> {
  const { expScale } = await softmaxKernelFor(sm);
  const S = sm.cols;
  const D = sm.rows;
  const B = likelihoodBlock(D);
  const buf = sm.memory.buffer;
  const half = new Uint16Array(buf, bl.halfOffset, D * S);
  const blockAddr = bl.blockOffset + slot * bl.blockBytes;
  const block = new Float32Array(buf, blockAddr, D * B);
  const table = float16Table();
  const a = Math.fround(sm.a);
  return (j0, width) => {
    for (let i = 0; i < D; i++) widen(half, i * S + j0, block, i * B, width, table);
    expScale(blockAddr, D, width, B * 4, a, bl.statsOffset);
    return blockAddr;
  };
}

/**
 * Normalised blocks of P per worker (cos / cos_cubed), kept for the latest P only: P is fixed per
 * probe bundle, so after the first call a checkpoint costs one MatMul per block. Costs one extra
 * copy of P in memory, split across the workers.
 */
const normalisedBlocks = new Map<string, ort.Tensor>();
let normalisedFor = -1;

function normalisedBlock(t: Extract<Task, { kind: 'cosine' }>, j0: number, w: number): ort.Tensor {
  const { p } = t;
  if (normalisedFor !== p.id) {
    normalisedBlocks.clear();
    normalisedFor = p.id;
  }
  const key = `${t.cubed}:${t.minNorm}:${j0}:${w}`;
  let hit = normalisedBlocks.get(key);
  if (!hit) {
    const D = p.rows;
    const S = p.cols;
    const P = new Float32Array(p.buffer);
    // Row-wise passes (contiguous reads of P), column statistics in float64.
    const x = new Float64Array(D * w);
    for (let i = 0; i < D; i++) for (let c = 0; c < w; c++) x[i * w + c] = P[i * S + j0 + c];
    const acc = new Float64Array(w);
    if (t.cubed) {
      for (let i = 0; i < D; i++) for (let c = 0; c < w; c++) acc[c] += x[i * w + c];
      for (let c = 0; c < w; c++) acc[c] /= D;
      for (let i = 0; i < D; i++) for (let c = 0; c < w; c++) x[i * w + c] = (x[i * w + c] - acc[c]) ** 3;
      acc.fill(0);
    }
    for (let i = 0; i < D; i++) for (let c = 0; c < w; c++) acc[c] += x[i * w + c] * x[i * w + c];
    for (let c = 0; c < w; c++) acc[c] = t.cubed ? Math.max(Math.sqrt(acc[c]), t.minNorm) : Math.sqrt(acc[c]);
    const block = new Float32Array(D * w);
    for (let i = 0; i < D; i++) for (let c = 0; c < w; c++) block[i * w + c] = x[i * w + c] / acc[c];
    hit = new ort.Tensor('float32', block, [D, w]);
    normalisedBlocks.set(key, hit);
  }
  return hit;
}

/**
 * cos / cos_cubed on a block of concepts: columns normalised (and for cos_cubed centred and cubed)
 * in float64, then one onnxruntime MatMul per block of concepts; output columns written in place.
 */
async function cosineTask(t: Extract<Task, { kind: 'cosine' }>, engine: DenseEngine): Promise<void> {
  const { p, q } = t;
  const D = p.rows;
  const S = p.cols;
  const N = q.cols;
  if (engine === 'loops') return cosineLoops(t);
  const s = await session('matmul', matmulGraph);
  const Qn = normalisedColumnsLoops(new Float32Array(q.buffer), D, N, 0, N, t.cubed, t.minNorm);
  const Qt = new Float32Array(N * D);
  for (let n = 0; n < N; n++) Qt.set(Qn[n], n * D);
  const out = new Float32Array(t.out);
  const qTensor = new ort.Tensor('float32', Qt, [N, D]);
  const blockCols = Math.max(8, Math.min(t.colEnd - t.colStart, Math.floor((16 << 20) / D)));
  for (let j0 = t.colStart; j0 < t.colEnd; j0 += blockCols) {
    const w = Math.min(blockCols, t.colEnd - j0);
    const sim = (await s.run({ A: qTensor, B: normalisedBlock(t, j0, w) })).Y.data as Float32Array;
    for (let k = 0; k < N; k++) out.set(sim.subarray(k * w, (k + 1) * w), k * S + j0);
  }
}

/** Columns of X (rows x cols, row-major) transformed as cos / cos_cubed prescribe, as float64 column vectors. */
function normalisedColumnsLoops(
  X: Float32Array,
  rows: number,
  cols: number,
  c0: number,
  c1: number,
  cubed: boolean,
  minNorm: number,
): Float64Array[] {
  const out: Float64Array[] = [];
  for (let c = c0; c < c1; c++) {
    const v = new Float64Array(rows);
    for (let i = 0; i < rows; i++) v[i] = X[i * cols + c];
    if (cubed) {
      let mean = 0;
      for (let i = 0; i < rows; i++) mean += v[i];
      mean /= rows;
      for (let i = 0; i < rows; i++) v[i] = (v[i] - mean) ** 3;
    }
    let norm = 0;
    for (let i = 0; i < rows; i++) norm += v[i] * v[i];
    norm = Math.sqrt(norm);
    if (cubed) norm = Math.max(norm, minNorm);
    for (let i = 0; i < rows; i++) v[i] /= norm;
    out.push(v);
  }
  return out;
}

/** cos / cos_cubed with plain loops: the calling thread's engine, for small inputs only. */
function cosineLoops(t: Extract<Task, { kind: 'cosine' }>): void {
  const { p, q } = t;
  const D = p.rows;
  const S = p.cols;
  const N = q.cols;
  const Pn = normalisedColumnsLoops(
    new Float32Array(p.buffer),
    D,
    S,
    t.colStart,
    t.colEnd,
    t.cubed,
    t.minNorm,
  );
  const Qn = normalisedColumnsLoops(new Float32Array(q.buffer), D, N, 0, N, t.cubed, t.minNorm);
  const out = new Float32Array(t.out);
  for (let k = 0; k < N; k++) {
    for (let j = t.colStart; j < t.colEnd; j++) {
      const a = Qn[k];
      const b = Pn[j - t.colStart];
      let s = 0;
      for (let i = 0; i < D; i++) s += a[i] * b[i];
      out[k * S + j] = s;
    }
  }
}

/**
 * rank_reorder, ported from CLIP-Dissect's similarity.py: for each neuron take its top
 * floor(D * top_fraction) images; for each concept, reorder the neuron's sorted activations by the
 * concept's ranking of those images and measure mean |a - reordered|^p, relative to a baseline of 5
 * random permutations, divided by (mean concept score)^scale_p; sim = -error. The baseline
 * permutations come from a seeded generator per neuron (the reference uses torch's global RNG).
 * Ranks of equal concept scores follow image order (stable sort).
 */
function rankReorderTask(t: Extract<Task, { kind: 'rank_reorder' }>): void {
  const { p, q } = t;
  const D = p.rows;
  const S = p.cols;
  const N = q.cols;
  const P = new Float32Array(p.buffer);
  const Q = new Float32Array(q.buffer);
  const out = new Float32Array(t.out);
  const topN = Math.floor(D * t.topFraction);
  const values = new Float32Array(D);
  const order = new Int32Array(D);
  const target = new Float64Array(topN);
  const ascending = new Float64Array(topN);
  const column = new Float64Array(topN);
  const byScore = Array.from({ length: topN }, (_, i) => i);
  const rank = new Int32Array(topN);
  const perm = new Int32Array(topN);
  for (let n = t.colStart; n < t.colEnd; n++) {
    for (let i = 0; i < D; i++) values[i] = Q[i * N + n];
    selectTopK(values, order, topN);
    for (let r = 0; r < topN; r++) target[r] = values[order[r]];
    for (let r = 0; r < topN; r++) ascending[r] = target[topN - 1 - r];
    const random = mulberry32(neuronSeed(t.seed, n));
    let baseline = 0;
    for (let rep = 0; rep < 5; rep++) {
      for (let i = 0; i < topN; i++) perm[i] = i;
      for (let i = topN - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        const tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
      }
      for (let i = 0; i < topN; i++) baseline += Math.abs(ascending[i] - ascending[perm[i]]) ** t.power;
    }
    baseline /= topN * 5;
    for (let j = 0; j < S; j++) {
      let mean = 0;
      for (let r = 0; r < topN; r++) {
        column[r] = P[order[r] * S + j];
        mean += column[r];
      }
      mean /= topN;
      for (let i = 0; i < topN; i++) byScore[i] = i;
      byScore.sort((x, y) => column[x] - column[y] || x - y);
      for (let i = 0; i < topN; i++) rank[byScore[i]] = i;
      let err = 0;
      for (let r = 0; r < topN; r++) err += Math.abs(target[r] - ascending[rank[r]]) ** t.power;
      err /= topN;
      out[n * S + j] = -(err / baseline / mean ** t.scaleP);
    }
  }
}

/** Run one task; `slot` is the caller's worker index (its scratch slot in a softmax cache memory). */
export async function runTask(t: Task, slot: number, engine: DenseEngine = 'onnxruntime'): Promise<void> {
  switch (t.kind) {
    case 'softmax':
      return softmaxTask(t, engine, slot);
    case 'topk':
      return topkTask(t);
    case 'likelihood':
      return likelihoodTask(t, slot);
    case 'cosine':
      return cosineTask(t, engine);
    case 'rank_reorder':
      return rankReorderTask(t);
    default:
      throw new CmError('INTERNAL', `unknown dissect task ${(t as { kind: string }).kind}`);
  }
}
