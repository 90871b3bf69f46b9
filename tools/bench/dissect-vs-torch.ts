/**
 * `cm dissect` against the PyTorch reference soft_wpmi (tools/reference/soft_wpmi.py, Debian's
 * python3-torch), side by side: whole processes, alternately, three runs each, on the same inputs
 * (issue 15). Prints each run, both medians, the ratio, both peak memories (GNU time's maximum
 * resident set) and the label agreement (argmax per neuron).
 *
 *   npm run bench:dissect-vs-torch                    (D=5000 S=20000 N=512)
 *   npx tsx tools/bench/dissect-vs-torch.ts --D 10000 --S 20000 --N 2048 --runs 3
 *   npx tsx tools/bench/dissect-vs-torch.ts --D 50000 --torch 0 --float16 1 --runs 1
 *       (D = 50,000: cm dissect only, on float32 P and on float16 P, labels compared)
 *
 * Inputs are made once, seeded: P with CLIP-like values (0.2 +- 0.05) and one planted concept per
 * neuron on that neuron's most active images, so the labels are meaningful and comparable. P is
 * written block by block (a D = 50,000 P is 4 GB), as float32 and, with --float16 1, also as
 * float16 (numpy's rounding); cm dissect runs with --timings and the median run's stages are printed.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { encodeNpy, float32ToFloat16, readFloatMatrix, writeNpy } from '@cm/core';
import { arg, median } from './args';

const D = arg('D', 5000);
const S = arg('S', 20000);
const N = arg('N', 512);
const RUNS = arg('runs', 3);
const WITH_TORCH = arg('torch', 1) !== 0;
const WITH_FLOAT16 = arg('float16', 0) !== 0;
const ROOT = resolve(__dirname, '../..');
const PYTHON = '/usr/bin/python3';

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** An .npy writer of a D x S matrix, fed row blocks in order (the header first). */
function npyRowWriter(
  file: string,
  rows: number,
  cols: number,
  half: boolean,
): (block: Float32Array) => void {
  const fd = openSync(file, 'w');
  // the header of an array of this shape and dtype (encodeNpy of an empty array gives it without data)
  const header = encodeNpy(half ? new Uint16Array(0) : new Float32Array(0), [0, cols]);
  const text = header.toString('latin1').replace(`(0, ${cols})`, `(${rows}, ${cols})`);
  // keep numpy's 64-byte alignment: the longer row count eats padding spaces before the newline
  const pad = text.length - header.length;
  writeSync(fd, Buffer.from(text.replace(' '.repeat(pad) + '\n', '\n'), 'latin1'));
  let written = 0;
  return (block) => {
    const bytes = half ? float32ToFloat16(block) : block;
    writeSync(fd, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    written += block.length / cols;
    if (written === rows) closeSync(fd);
  };
}

function makeInputs(dir: string): { p: string; p16?: string; q: string; planted: Int32Array } {
  const rnd = xorshift(42);
  const Q = new Float32Array(D * N);
  for (let i = 0; i < Q.length; i++) Q[i] = rnd();
  const planted = new Int32Array(N);
  for (let k = 0; k < N; k++) planted[k] = Math.floor(rnd() * S);
  const p = join(dir, 'P.npy');
  const p16 = WITH_FLOAT16 ? join(dir, 'P16.npy') : undefined;
  const q = join(dir, 'Q.npy');
  const writers = [npyRowWriter(p, D, S, false), ...(p16 ? [npyRowWriter(p16, D, S, true)] : [])];
  const BLOCK = 256;
  const block = new Float32Array(BLOCK * S);
  for (let r0 = 0; r0 < D; r0 += BLOCK) {
    const n = Math.min(BLOCK, D - r0);
    const rows = block.subarray(0, n * S);
    for (let i = 0; i < rows.length; i++) rows[i] = 0.2 + 0.1 * (rnd() - 0.5);
    // the neuron's planted concept shows on the images where it fires most
    for (let i = 0; i < n; i++)
      for (let k = 0; k < N; k++) if (Q[(r0 + i) * N + k] > 0.97) rows[i * S + planted[k]] += 0.08;
    for (const write of writers) write(rows);
  }
  writeNpy(q, Q, [D, N]);
  return { p, p16, q, planted };
}

interface Run {
  seconds: number;
  maxRssMiB: number;
  stdout: string;
}

/** One whole process under GNU time: wall seconds and maximum resident set. */
function timed(cmd: string, args: string[]): Run {
  const r = spawnSync('/usr/bin/time', ['-f', 'CMTIME %e %M', cmd, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  const m = /CMTIME ([\d.]+) (\d+)/.exec(r.stderr);
  if (r.status !== 0 || !m)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  return { seconds: Number(m[1]), maxRssMiB: Number(m[2]) / 1024, stdout: r.stdout };
}

function argmaxRows(file: string): Int32Array {
  const m = readFloatMatrix(file, 'similarity');
  const out = new Int32Array(m.rows);
  for (let k = 0; k < m.rows; k++) {
    let best = 0;
    for (let j = 1; j < m.cols; j++) if (m.data[k * m.cols + j] > m.data[k * m.cols + best]) best = j;
    out[k] = best;
  }
  return out;
}

function cmDissect(p: string, q: string, out: string): Run {
  return timed(process.execPath, [
    join(ROOT, 'apps/cli/bin/cm.js'),
    'dissect',
    '--probe-scores',
    p,
    '--activations',
    q,
    '--out',
    out,
    '--timings',
  ]);
}

const stagesOf = (r: Run): string => /stages \(s\): .*/.exec(r.stdout)?.[0] ?? '(no stages printed)';

function agreement(a: Int32Array, b: Int32Array): number {
  let same = 0;
  for (let k = 0; k < a.length; k++) if (a[k] === b[k]) same++;
  return same;
}

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-vs-torch-'));
  try {
    console.log(
      `inputs: D=${D} S=${S} N=${N} soft_wpmi defaults; ${RUNS} runs each, alternating; load ${loadavg()[0].toFixed(2)}`,
    );
    const { p, p16, q, planted } = makeInputs(dir);
    const torchOut = join(dir, 'torch.npy');
    const cmOut = join(dir, 'cm.npy');
    const cm16Out = join(dir, 'cm16.npy');
    const torchRuns: Run[] = [];
    const cmRuns: Run[] = [];
    const cm16Runs: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      if (WITH_TORCH) {
        const t = timed(PYTHON, [join(ROOT, 'tools/reference/soft_wpmi.py'), p, q, torchOut]);
        torchRuns.push(t);
        console.log(`run ${i + 1}  pytorch    ${t.seconds.toFixed(2)} s  ${t.maxRssMiB.toFixed(0)} MiB`);
      }
      const c = cmDissect(p, q, cmOut);
      cmRuns.push(c);
      console.log(
        `run ${i + 1}  cm dissect ${c.seconds.toFixed(2)} s  ${c.maxRssMiB.toFixed(0)} MiB  ${stagesOf(c)}`,
      );
      if (p16) {
        const h = cmDissect(p16, q, cm16Out);
        cm16Runs.push(h);
        console.log(
          `run ${i + 1}  cm dissect, float16 P ${h.seconds.toFixed(2)} s  ${h.maxRssMiB.toFixed(0)} MiB  ${stagesOf(h)}`,
        );
      }
    }
    const cMed = median(cmRuns.map((r) => r.seconds));
    const peak = (runs: Run[]): string => Math.max(...runs.map((r) => r.maxRssMiB)).toFixed(0);
    const inputsMiB = (bytesPerP: number): string => ((D * S * bytesPerP + D * N * 4) / 2 ** 20).toFixed(0);
    // issue 15: a dissection's peak RSS at most its inputs (P as stored + Q) + 1 GiB
    const bound = (runs: Run[], bytesPerP: number): string => {
      const limit = Number(inputsMiB(bytesPerP)) + 1024;
      const worst = Math.max(...runs.map((r) => r.maxRssMiB));
      return `bound inputs + 1 GiB = ${limit} MiB: ${worst <= limit ? 'PASS' : 'FAIL'}`;
    };
    const b = argmaxRows(cmOut);
    let plantedCm = 0;
    for (let k = 0; k < N; k++) if (b[k] === planted[k]) plantedCm++;
    if (WITH_TORCH) {
      const tMed = median(torchRuns.map((r) => r.seconds));
      const a = argmaxRows(torchOut);
      let plantedTorch = 0;
      for (let k = 0; k < N; k++) if (a[k] === planted[k]) plantedTorch++;
      console.log(
        `median: pytorch ${tMed.toFixed(2)} s, cm dissect ${cMed.toFixed(2)} s; cm is ${(tMed / cMed).toFixed(2)}x the reference's speed`,
      );
      console.log(
        `peak memory: pytorch ${peak(torchRuns)} MiB, cm dissect ${peak(cmRuns)} MiB; inputs ${inputsMiB(4)} MiB; cm ${bound(cmRuns, 4)}`,
      );
      console.log(
        `labels: ${agreement(a, b)}/${N} identical; planted concept found by the reference for ${plantedTorch}/${N} neurons, by cm for ${plantedCm}/${N}`,
      );
    } else {
      console.log(
        `median: cm dissect ${cMed.toFixed(2)} s; peak memory ${peak(cmRuns)} MiB (inputs ${inputsMiB(4)} MiB; ${bound(cmRuns, 4)}); planted concept found for ${plantedCm}/${N} neurons`,
      );
    }
    if (p16) {
      const h = argmaxRows(cm16Out);
      console.log(
        `float16 P (kept float16 in memory): median ${median(cm16Runs.map((r) => r.seconds)).toFixed(2)} s, peak memory ${peak(cm16Runs)} MiB (inputs ${inputsMiB(2)} MiB; ${bound(cm16Runs, 2)}); labels ${agreement(h, b)}/${N} identical to float32 P`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
