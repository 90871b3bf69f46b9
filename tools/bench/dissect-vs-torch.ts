/**
 * `cm dissect` against the PyTorch reference soft_wpmi (tools/reference/soft_wpmi.py, Debian's
 * python3-torch), side by side: whole processes, alternately, three runs each, on the same inputs
 * (issue 15). Prints each run, both medians, the ratio, both peak memories (GNU time's maximum
 * resident set) and the label agreement (argmax per neuron).
 *
 *   npm run bench:dissect-vs-torch                    (D=5000 S=20000 N=512)
 *   npx tsx tools/bench/dissect-vs-torch.ts --D 10000 --S 20000 --N 2048 --runs 3
 *
 * Inputs are made once, seeded: P with CLIP-like values (0.2 +- 0.05) and one planted concept per
 * neuron on that neuron's most active images, so the labels are meaningful and comparable.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readFloatMatrix, writeNpy } from '@cm/core';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const D = arg('D', 5000);
const S = arg('S', 20000);
const N = arg('N', 512);
const RUNS = arg('runs', 3);
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

function makeInputs(dir: string): { p: string; q: string; planted: Int32Array } {
  const rnd = xorshift(42);
  const P = new Float32Array(D * S);
  for (let i = 0; i < P.length; i++) P[i] = 0.2 + 0.1 * (rnd() - 0.5);
  const Q = new Float32Array(D * N);
  for (let i = 0; i < Q.length; i++) Q[i] = rnd();
  const planted = new Int32Array(N);
  for (let k = 0; k < N; k++) {
    planted[k] = Math.floor(rnd() * S);
    // the neuron's planted concept shows on the images where it fires most
    for (let i = 0; i < D; i++) if (Q[i * N + k] > 0.97) P[i * S + planted[k]] += 0.08;
  }
  const p = join(dir, 'P.npy');
  const q = join(dir, 'Q.npy');
  writeNpy(p, P, [D, S]);
  writeNpy(q, Q, [D, N]);
  return { p, q, planted };
}

interface Run {
  seconds: number;
  maxRssMiB: number;
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
  return { seconds: Number(m[1]), maxRssMiB: Number(m[2]) / 1024 };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

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

function main(): void {
  const dir = mkdtempSync(join(tmpdir(), 'cm-bench-vs-torch-'));
  try {
    console.log(
      `inputs: D=${D} S=${S} N=${N} soft_wpmi defaults; ${RUNS} runs each, alternating; load ${loadavg()[0].toFixed(2)}`,
    );
    const { p, q, planted } = makeInputs(dir);
    const torchOut = join(dir, 'torch.npy');
    const cmOut = join(dir, 'cm.npy');
    const torchRuns: Run[] = [];
    const cmRuns: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = timed(PYTHON, [join(ROOT, 'tools/reference/soft_wpmi.py'), p, q, torchOut]);
      torchRuns.push(t);
      console.log(`run ${i + 1}  pytorch    ${t.seconds.toFixed(2)} s  ${t.maxRssMiB.toFixed(0)} MiB`);
      const c = timed(process.execPath, [
        join(ROOT, 'apps/cli/bin/cm.js'),
        'dissect',
        '--probe-scores',
        p,
        '--activations',
        q,
        '--out',
        cmOut,
      ]);
      cmRuns.push(c);
      console.log(`run ${i + 1}  cm dissect ${c.seconds.toFixed(2)} s  ${c.maxRssMiB.toFixed(0)} MiB`);
    }
    const tMed = median(torchRuns.map((r) => r.seconds));
    const cMed = median(cmRuns.map((r) => r.seconds));
    const a = argmaxRows(torchOut);
    const b = argmaxRows(cmOut);
    let agree = 0;
    let plantedTorch = 0;
    for (let k = 0; k < N; k++) {
      if (a[k] === b[k]) agree++;
      if (a[k] === planted[k]) plantedTorch++;
    }
    console.log(
      `median: pytorch ${tMed.toFixed(2)} s, cm dissect ${cMed.toFixed(2)} s; cm is ${(tMed / cMed).toFixed(2)}x the reference's speed`,
    );
    console.log(
      `peak memory: pytorch ${Math.max(...torchRuns.map((r) => r.maxRssMiB)).toFixed(0)} MiB, cm dissect ${Math.max(...cmRuns.map((r) => r.maxRssMiB)).toFixed(0)} MiB; inputs ${(((D * S + D * N) * 4) / 2 ** 20).toFixed(0)} MiB`,
    );
    console.log(
      `labels: ${agree}/${N} identical; planted concept found by the reference for ${plantedTorch}/${N} neurons`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
