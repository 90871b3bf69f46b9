import { availableParallelism } from 'node:os';
import { CmError } from '@cm/core';
import type { Matrix, SimilarityMethod, SimilarityParams } from './types';
import { likelihoodFactors, resolveParams, validateInputs, type ResolvedParams } from './params';
import { slotBytesFor, type SharedMatrixRef, type SoftmaxCacheRef, type Task } from './tasks';
import { inlineExecutor, splitRange, type Executor } from './executor';
import { WorkerPool } from './worker-pool';
import {
  consumedWith,
  isSoftmaxInput,
  softmaxInPlace,
  softmaxReadyInput,
  type SoftmaxInput,
} from './softmax-input';

let nextId = 1;
const sharedCopies = new WeakMap<Float32Array, SharedMatrixRef>();

/**
 * A matrix in shared memory for the workers. A matrix already backed by a whole SharedArrayBuffer
 * is used in place; any other is copied once (cached per array, so a probe bundle's P is copied
 * once, not per dissection). Loaders of big P should allocate with `allocSharedMatrix`.
 */
export function toShared(m: Matrix): SharedMatrixRef {
  const hit = sharedCopies.get(m.data);
  if (hit) return hit;
  let buffer: SharedArrayBuffer;
  if (
    m.data.buffer instanceof SharedArrayBuffer &&
    m.data.byteOffset === 0 &&
    m.data.buffer.byteLength === m.data.byteLength
  ) {
    buffer = m.data.buffer;
  } else {
    buffer = new SharedArrayBuffer(m.data.byteLength);
    new Float32Array(buffer).set(m.data);
  }
  const ref: SharedMatrixRef = { id: nextId++, rows: m.rows, cols: m.cols, buffer };
  sharedCopies.set(m.data, ref);
  return ref;
}

/** A zero matrix backed by a SharedArrayBuffer: pools read it without copying. */
export function allocSharedMatrix(rows: number, cols: number): Matrix {
  return { rows, cols, data: new Float32Array(new SharedArrayBuffer(rows * cols * 4)) };
}

/** Per executor, per P: the softmax caches (most recent last); at most two kept (soft_wpmi and wpmi). */
const softmaxCaches = new WeakMap<Executor, Map<string, Promise<SoftmaxCacheRef>>>();
const MAX_SOFTMAX_CACHES = 2;

/**
 * softmax(a P) for this P, computed once per (executor, P, a) and kept: P is fixed per probe bundle,
 * so a checkpoint's dissection pays only for its own activations (the "warm" figure).
 */
function softmaxCache(exec: Executor, p: SharedMatrixRef, a: number): Promise<SoftmaxCacheRef> {
  let caches = softmaxCaches.get(exec);
  if (!caches) {
    caches = new Map();
    softmaxCaches.set(exec, caches);
  }
  const key = `${p.id}:${a}`;
  const hit = caches.get(key);
  if (hit) {
    caches.delete(key);
    caches.set(key, hit);
    return hit;
  }
  const created = (async () => {
    const stride = Math.ceil(p.cols / 8) * 8;
    const slotBytes = slotBytesFor(p.rows);
    const smOffset = exec.size * slotBytes;
    const bytes = smOffset + p.rows * stride * 4;
    const pages = Math.ceil(bytes / 65536);
    if (pages > 65536) {
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `softmax cache of ${p.rows} x ${p.cols} exceeds the 4 GiB WebAssembly memory`,
        {
          context: { D: p.rows, S: p.cols },
          hint: 'use fewer probe images or concepts',
        },
      );
    }
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const sm: SoftmaxCacheRef = {
      id: nextId++,
      memory,
      rows: p.rows,
      cols: p.cols,
      stride,
      smOffset,
      slotBytes,
      a,
    };
    await exec.run(
      splitRange(p.rows, exec.size).map(([rowStart, rowEnd]): Task => ({
        kind: 'softmax',
        p,
        sm,
        rowStart,
        rowEnd,
      })),
    );
    return sm;
  })();
  caches.set(key, created);
  created.catch(() => caches.delete(key));
  while (caches.size > MAX_SOFTMAX_CACHES) caches.delete(caches.keys().next().value as string);
  return created;
}

/** Top-k image indices per neuron (N x k, int32, largest activation first), computed by the executor. */
export async function topImages(exec: Executor, q: SharedMatrixRef, k: number): Promise<Int32Array> {
  const out = new SharedArrayBuffer(q.cols * k * 4);
  await exec.run(
    splitRange(q.cols, exec.size).map(([colStart, colEnd]): Task => ({
      kind: 'topk',
      q,
      k,
      colStart,
      colEnd,
      out,
    })),
  );
  return new Int32Array(out);
}

/**
 * A similarity matrix with, for (soft_)wpmi, the layer normaliser logp[j] = logsumexp_k L[k, j] - log N
 * (S values) and the lambda it was applied with, so that a neuron's own log-likelihood is
 * L[k, j] = sim[k, j] + lambda * logp[j] (internal: computeSimilarity returns the matrix only).
 */
export interface SimilarityResult {
  sim: Matrix;
  likelihood?: { logp: Float64Array; lambda: number };
  /**
   * wpmi / soft_wpmi: each neuron's top-k images by activation (N x topK, int32, best first), the
   * ranking the likelihood was computed on; kept so the evidence images cost nothing extra.
   */
  topImages?: { k: number; indices: Int32Array };
  /** Seconds per stage, from the call's start to each stage's end (softmax and top-k run at once). */
  stages: SimilarityStages;
}

/** Wall seconds of a similarity's stages (0 when a stage did not run, e.g. a cached softmax). */
export interface SimilarityStages {
  softmax: number;
  topk: number;
  /** The likelihood kernel (wpmi / soft_wpmi) or the method's whole pass (cos, rank_reorder). */
  kernel: number;
}

/** softmax(a P) of a matrix (cached) or of a SoftmaxInput (in place, once). */
function softmaxOf(exec: Executor, P: Matrix | SoftmaxInput, a: number): Promise<SoftmaxCacheRef> {
  if (!isSoftmaxInput(P) && !softmaxReadyInput(P.data)) return softmaxCache(exec, toShared(P), a);
  const input = isSoftmaxInput(P) ? P : (softmaxReadyInput(P.data) as SoftmaxInput);
  return softmaxInPlace(input, a, exec.size, (sm, source) =>
    exec.run(
      splitRange(input.rows, exec.size).map(([rowStart, rowEnd]): Task => ({
        kind: 'softmax',
        p: source ?? 'in-place',
        sm,
        rowStart,
        rowEnd,
      })),
    ),
  );
}

/** P as a shared matrix, for the methods that read P itself. */
function matrixOf(P: Matrix | SoftmaxInput, method: string): SharedMatrixRef {
  const ready = isSoftmaxInput(P) ? undefined : softmaxReadyInput(P.data);
  if (ready && consumedWith(ready) !== undefined) {
    throw new CmError(
      'INVALID_ARGUMENT',
      `${method} reads the probe scores P themselves, but this P was replaced by softmax(${consumedWith(ready)} P) in place (a wpmi / soft_wpmi P)`,
      { context: { method }, hint: 'load the bundle without softmaxInPlace for this method' },
    );
  }
  // a softmax-ready P still holding its values: a copy (it is not a whole SharedArrayBuffer)
  if (!isSoftmaxInput(P)) return toShared(P);
  throw new CmError(
    'INVALID_ARGUMENT',
    `${method} reads the probe scores P themselves; this P was loaded for wpmi / soft_wpmi only (softmax in place)`,
    { context: { method }, hint: 'load P as a matrix (readFloatMatrix) for this method' },
  );
}

/** L[k, j] = sim[k, j] + lambda * logp[j] in float64 (sim is float32: good to one float32 ulp of sim). */
export function ownLikelihood(result: SimilarityResult, k: number, j: number): number {
  const { sim, likelihood } = result;
  const v = sim.data[k * sim.cols + j];
  return likelihood ? v + likelihood.lambda * likelihood.logp[j] : v;
}

/** The similarity of an already-validated method on an executor. */
export async function similarityOn(
  exec: Executor,
  r: ResolvedParams,
  P: Matrix | SoftmaxInput,
  Q: Matrix,
): Promise<Matrix> {
  return (await similarityDetailedOn(exec, r, P, Q)).sim;
}

/**
 * Same, with the (soft_)wpmi normaliser logp (see SimilarityResult). `output`, when given, is where
 * the N x S result is written (exactly N * S * 4 bytes, every value overwritten): dissectOn passes
 * a buffer of its SharedBufferPool so that a checkpoint's matrices are not new allocations.
 */
export async function similarityDetailedOn(
  exec: Executor,
  r: ResolvedParams,
  P: Matrix | SoftmaxInput,
  Q: Matrix,
  output?: SharedArrayBuffer,
): Promise<SimilarityResult> {
  const t0 = performance.now();
  const since = (): number => (performance.now() - t0) / 1000;
  const stages: SimilarityStages = { softmax: 0, topk: 0, kernel: 0 };
  const q = toShared(Q);
  const N = Q.cols;
  const S = P.cols;
  if (output && output.byteLength !== N * S * 4)
    throw new CmError(
      'INTERNAL',
      `similarity output buffer has ${output.byteLength} bytes, ${N} x ${S} needs ${N * S * 4}`,
    );
  const out = output ?? new SharedArrayBuffer(N * S * 4);
  let likelihood: SimilarityResult['likelihood'];
  let ranked: SimilarityResult['topImages'];
  switch (r.method) {
    case 'soft_wpmi':
    case 'wpmi': {
      const f = likelihoodFactors(r);
      const [sm, idx] = await Promise.all([
        softmaxOf(exec, P, f.a).then((v) => ((stages.softmax = since()), v)),
        topImages(exec, q, f.topK).then((v) => ((stages.topk = since()), v)),
      ]);
      const logp = new SharedArrayBuffer(S * 8);
      await exec.run(
        splitRange(S, exec.size, 8).map(([colStart, colEnd]): Task => ({
          kind: 'likelihood',
          sm,
          neurons: N,
          topK: f.topK,
          idx: idx.buffer as SharedArrayBuffer,
          c: f.c,
          p: f.p,
          lambda: f.lambda,
          colStart,
          colEnd,
          out,
          logp,
        })),
      );
      likelihood = { logp: new Float64Array(logp), lambda: f.lambda };
      ranked = { k: f.topK, indices: idx };
      break;
    }
    case 'cos':
    case 'cos_cubed': {
      const p = matrixOf(P, r.method);
      const cubed = r.method === 'cos_cubed';
      const minNorm = r.method === 'cos_cubed' ? r.params.minNorm : 0;
      await exec.run(
        splitRange(S, exec.size, 8).map(([colStart, colEnd]): Task => ({
          kind: 'cosine',
          cubed,
          minNorm,
          p,
          q,
          colStart,
          colEnd,
          out,
        })),
      );
      break;
    }
    case 'rank_reorder': {
      const p = matrixOf(P, r.method);
      const { p: power, topFraction, scaleP, seed } = r.params;
      await exec.run(
        splitRange(N, exec.size).map(([colStart, colEnd]): Task => ({
          kind: 'rank_reorder',
          p,
          q,
          power,
          topFraction,
          scaleP,
          seed,
          colStart,
          colEnd,
          out,
        })),
      );
      break;
    }
  }
  stages.kernel = since();
  return { sim: { rows: N, cols: S, data: new Float32Array(out) }, likelihood, topImages: ranked, stages };
}

/** Work above which computeSimilarity moves to the default worker pool (about 20 ms of work inline). */
const INLINE_WORK_LIMIT = 2e7;

function workOf(r: ResolvedParams, P: { rows: number; cols: number }, Q: Matrix): number {
  const D = P.rows;
  const S = P.cols;
  const N = Q.cols;
  switch (r.method) {
    case 'soft_wpmi':
    case 'wpmi':
      return D * S + N * S * r.params.topK;
    case 'rank_reorder':
      return N * S * Math.max(1, Math.floor(D * r.params.topFraction)) * 8;
    default:
      return N * S * D;
  }
}

let defaultPool: Executor | undefined;
/** The process-wide pool used by computeSimilarity for big inputs (one worker per core, started on first use). */
export function defaultExecutor(): Executor {
  defaultPool ??= new WorkerPool({ workers: Math.max(1, availableParallelism()), unrefWhenIdle: true });
  return defaultPool;
}

/**
 * CLIP-Dissect similarity of every neuron with every concept: P (D x S, images x concepts) and
 * Q (D x N, images x neurons), float32 row-major; returns N x S. Reference defaults (method.md)
 * unless `params` overrides them. Big inputs run on the default worker pool (all cores).
 */
export async function computeSimilarity(
  method: SimilarityMethod,
  P: Matrix | SoftmaxInput,
  Q: Matrix,
  params?: SimilarityParams,
): Promise<Matrix> {
  return (await computeSimilarityDetailed(method, P, Q, params)).sim;
}

/**
 * The similarity with, for wpmi / soft_wpmi, the per-concept offset lambda * logp[j] that turns a
 * score into the neuron's own likelihood: what `topConceptsPerNeuron` needs to break near-ties the
 * way `dissectLayer` does. Runs on `exec` (a DissectPool) or as computeSimilarity would.
 */
export async function computeSimilarityDetailed(
  method: SimilarityMethod,
  P: Matrix | SoftmaxInput,
  Q: Matrix,
  params?: SimilarityParams,
  exec?: Executor,
): Promise<{ sim: Matrix; likelihoodOffset?: Float64Array; stages: SimilarityStages }> {
  const r = resolveParams(method, params);
  // a SoftmaxInput's values are checked by the softmax pass that reads them (in place)
  validateInputs(r, isSoftmaxInput(P) ? { rows: P.rows, cols: P.cols } : P, Q);
  const on = exec ?? (workOf(r, P, Q) > INLINE_WORK_LIMIT ? defaultExecutor() : inlineExecutor);
  const { sim, likelihood, stages } = await similarityDetailedOn(on, r, P, Q);
  if (!likelihood) return { sim, stages };
  return { sim, likelihoodOffset: likelihood.logp.map((v) => likelihood.lambda * v), stages };
}

/** Same, on a given executor (a DissectPool, or inlineExecutor to stay in this thread). */
export async function computeSimilarityOn(
  exec: Executor,
  method: SimilarityMethod,
  P: Matrix | SoftmaxInput,
  Q: Matrix,
  params?: SimilarityParams,
): Promise<Matrix> {
  return (await computeSimilarityDetailed(method, P, Q, params, exec)).sim;
}
