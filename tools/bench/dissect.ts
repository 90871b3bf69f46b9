/**
 * Benchmark of the dissection core (issue 3): one layer with D = 5000 probe images, S = 20000
 * concepts, N = 512 neurons, soft_wpmi (top_k 100) and cos, on a DissectPool with one worker per core.
 *
 *   npm run bench:dissect            (defaults: D=5000 S=20000 N=512)
 *   npx tsx tools/bench/dissect.ts --D 2000 --S 5000 --N 128
 *
 * Prints: pool start-up, soft_wpmi cold (first call on a P: includes softmax(aP) of the whole P,
 * cached afterwards) and warm (next checkpoint: new activations, same P), cos, a spot check of a
 * few (neuron, concept) values against a direct float64 evaluation of the formula, and the peak
 * resident memory of the process (all threads).
 */
import { availableParallelism, loadavg } from 'node:os';
import {
  DEFAULT_TOP_IMAGES,
  DissectPool,
  allocSharedMatrix,
  SOFT_WPMI_DEFAULTS,
  topActivatingImages,
  type Matrix,
} from '@cm/dissect';
import { arg } from './args';

/** Fast deterministic fill (xorshift32); the numbers only need CLIP-like ranges, not quality. */
function fill(m: Matrix, seed: number, scale: number, offset: number): void {
  let x = seed >>> 0 || 1;
  const d = m.data;
  for (let i = 0; i < d.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    d[i] = offset + scale * (x / 4294967296 - 0.5);
  }
}

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function timed<T>(label: string, f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t = performance.now();
  const value = await f();
  const ms = performance.now() - t;
  console.log(`${label.padEnd(58)} ${(ms / 1000).toFixed(3)} s`);
  return { value, ms };
}

/** Direct float64 evaluation of soft_wpmi for (neuron, concept) pairs, from method.md (slow: a check, not a timing). */
function softWpmiDirect(P: Matrix, Q: Matrix, pairs: Array<[number, number]>): number[] {
  const { topK, a, lambda, minProb, pStart, pEnd } = SOFT_WPMI_DEFAULTS;
  const D = P.rows;
  const S = P.cols;
  const N = Q.cols;
  const rowMax = new Float64Array(D);
  const rowZ = new Float64Array(D);
  for (let i = 0; i < D; i++) {
    let max = -Infinity;
    for (let c = 0; c < S; c++) max = Math.max(max, a * P.data[i * S + c]);
    let z = 0;
    for (let c = 0; c < S; c++) z += Math.exp(a * P.data[i * S + c] - max);
    rowMax[i] = max;
    rowZ[i] = z;
  }
  const tops = Array.from({ length: N }, (_, k) =>
    Array.from({ length: D }, (_, i) => i)
      .sort((x, y) => Q.data[y * N + k] - Q.data[x * N + k] || x - y)
      .slice(0, topK),
  );
  const L = (k: number, j: number): number => {
    let s = 0;
    for (let r = 0; r < topK; r++) {
      const i = tops[k][r];
      const sm = Math.exp(a * P.data[i * S + j] - rowMax[i]) / rowZ[i];
      const p = pStart - (r / topK) * (pStart - pEnd);
      s += Math.log(1 + p * (sm - 1) + minProb);
    }
    return s;
  };
  return pairs.map(([neuron, concept]) => {
    const all = Array.from({ length: N }, (_, k) => L(k, concept));
    const max = Math.max(...all);
    const logp = max + Math.log(all.reduce((acc, v) => acc + Math.exp(v - max), 0)) - Math.log(N);
    return all[neuron] - lambda * logp;
  });
}

async function main(): Promise<void> {
  const D = arg('D', 5000);
  const S = arg('S', 20000);
  const N = arg('N', 512);
  const workers = arg('workers', availableParallelism());
  console.log(
    `dissect bench: D=${D} S=${S} N=${N}, soft_wpmi top_k ${SOFT_WPMI_DEFAULTS.topK}, ${workers} workers, node ${process.version}, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  const P = allocSharedMatrix(D, S);
  fill(P, 1, 0.1, 0.2); // CLIP image-text cosines cluster around 0.2
  const Q1 = allocSharedMatrix(D, N);
  const Q2 = allocSharedMatrix(D, N);
  fill(Q1, 2, 2, 0);
  fill(Q2, 3, 2, 0);
  const rssInputs = process.memoryUsage().rss;

  const pool = new DissectPool({ workers });
  const tiny = { rows: 200, cols: 64, data: P.data.subarray(0, 200 * 64) };
  await timed('pool start-up (threads, ORT sessions, wasm kernel)', async () => {
    await pool.similarity(
      'soft_wpmi',
      { ...tiny, data: tiny.data.slice() },
      { rows: 200, cols: 8, data: Q1.data.slice(0, 1600) },
    );
    await pool.similarity(
      'cos',
      { ...tiny, data: tiny.data.slice() },
      { rows: 200, cols: 8, data: Q1.data.slice(0, 1600) },
    );
  });
  const cold = await timed('soft_wpmi cold (first call on this P: + softmax(aP))', () =>
    pool.similarity('soft_wpmi', P, Q1),
  );
  const warm = await timed('soft_wpmi warm (new activations, same P)', () =>
    pool.similarity('soft_wpmi', P, Q2),
  );
  await timed('soft_wpmi warm, again', () => pool.similarity('soft_wpmi', P, Q1));
  await timed('cos cold (first call on this P: + column normalisation)', () => pool.similarity('cos', P, Q1));
  await timed('cos warm (new activations, same P; ORT MatMul)', () => pool.similarity('cos', P, Q2));
  // Evidence (neuron_labels.top_images): free for (soft_)wpmi, the head of their own top-k ranking;
  // for the other methods an extra partial selection of the top images per neuron.
  await timed(`evidence (cos etc.): top ${DEFAULT_TOP_IMAGES} images per neuron, pool`, () =>
    topActivatingImages(Q2, DEFAULT_TOP_IMAGES, pool),
  );
  await timed(`evidence (cos etc.): top ${DEFAULT_TOP_IMAGES} images per neuron, one thread`, () =>
    topActivatingImages(Q1, DEFAULT_TOP_IMAGES),
  );

  // Spot check: fast path against the formula, evaluated directly in float64.
  const pairs: Array<[number, number]> = [
    [0, 0],
    [N - 1, S - 1],
    [Math.floor(N / 2), Math.floor(S / 3)],
  ];
  const direct = softWpmiDirect(P, Q2, pairs);
  const worst = Math.max(...pairs.map(([k, j], i) => Math.abs(direct[i] - warm.value.data[k * S + j])));
  console.log(
    `spot check of 3 values vs a direct float64 evaluation: max |diff| ${worst.toExponential(2)}; cold and warm gave ${cold.value.rows} x ${cold.value.cols}`,
  );
  console.log(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} (on ${availableParallelism()} cores; other work on the machine inflates every figure)`,
  );
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  console.log(
    `memory: inputs P+Q ${mib(P.data.byteLength + 2 * Q1.data.byteLength)}; rss after inputs ${mib(rssInputs)}; peak rss ${mib(peakRss)}; max rss (getrusage) ${mib(process.resourceUsage().maxRSS * 1024)}`,
  );
  await pool.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
