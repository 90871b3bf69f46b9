import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { float32ToFloat16, readFloatMatrix, writeNpy } from '@cm/core';

const run = promisify(execFile);
const ROOT = join(__dirname, '../../..');
const CM = join(ROOT, 'apps/cli/bin/cm.js');
const VECTORS = join(ROOT, '../shared/testvectors/clip-dissect/public_small');
const P_FILE = join(VECTORS, 'clip_feats.npy');
const Q_FILE = join(VECTORS, 'target_feats.npy');

async function cm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CM, ...args], { cwd: ROOT, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof err.code === 'number' ? err.code : -1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
    };
  }
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cm-dissect-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('cm dissect writes the N x S similarity and labels.csv (soft_wpmi, reference vectors)', async () => {
  const concepts = join(dir, 'concepts.txt');
  writeFileSync(
    concepts,
    Array.from({ length: 48 }, (_, j) => (j === 5 ? 'red, bright "crimson"' : `concept_${j}`)).join('\n') +
      '\n',
  );
  const out = join(dir, 'sim.npy');
  const labels = join(dir, 'labels.csv');
  const r = await cm([
    'dissect',
    '--probe-scores',
    P_FILE,
    '--activations',
    Q_FILE,
    '--method',
    'soft_wpmi',
    '--out',
    out,
    '--concepts',
    concepts,
    '--labels-out',
    labels,
  ]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const sim = readFloatMatrix(out, 'sim');
  const ref = readFloatMatrix(join(VECTORS, 'soft_wpmi.npy'), 'ref');
  expect([sim.rows, sim.cols]).toEqual([24, 48]);
  let worst = 0;
  for (let i = 0; i < sim.data.length; i++) worst = Math.max(worst, Math.abs(sim.data[i] - ref.data[i]));
  expect(worst).toBeLessThan(2e-4);
  const lines = readFileSync(labels, 'utf8').trim().split('\n');
  expect(lines[0]).toBe('neuron,concept,score,top5');
  expect(lines).toHaveLength(25);
  const planted = (
    JSON.parse(readFileSync(join(VECTORS, 'meta.json'), 'utf8')) as { planted_preference: number[] }
  ).planted_preference;
  expect(lines[1].startsWith(`0,concept_${planted[0]},`)).toBe(true);
  expect(lines[1].split(',')[3].split(';')).toHaveLength(5);
});

it('float16 P (softmaxed in place) gives the float32 labels; --timings prints the stages', async () => {
  const P = readFloatMatrix(P_FILE, 'P');
  const p16 = join(dir, 'p16.npy');
  writeNpy(p16, float32ToFloat16(P.data), [P.rows, P.cols]);
  const concepts = join(dir, 'concepts16.txt');
  writeFileSync(concepts, Array.from({ length: 48 }, (_, j) => `c${j}`).join('\n'));
  const labelsOf = async (pFile: string, name: string, extra: string[] = []) => {
    const labels = join(dir, `${name}.csv`);
    const r = await cm([
      'dissect',
      '--probe-scores',
      pFile,
      '--activations',
      Q_FILE,
      '--out',
      join(dir, `${name}.npy`),
      '--concepts',
      concepts,
      '--labels-out',
      labels,
      ...extra,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return {
      stdout: r.stdout,
      top1: readFileSync(labels, 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(',')[1]),
    };
  };
  const wide = await labelsOf(P_FILE, 'l32');
  const half = await labelsOf(p16, 'l16', ['--timings', '--workers', '2']);
  expect(half.top1).toHaveLength(24);
  expect(half.top1).toEqual(wide.top1);
  expect(half.stdout).toMatch(/stages \(s\): start-up [\d.]+, read P [\d.]+, read Q [\d.]+, softmax [\d.]+/);
});

it('accepts float64 input and method flags (cos_cubed --min-norm)', async () => {
  const P = readFloatMatrix(P_FILE, 'P');
  const p64 = join(dir, 'p64.npy');
  writeNpy(p64, Float64Array.from(P.data), [P.rows, P.cols]);
  const out = join(dir, 'cc.npy');
  const r = await cm([
    'dissect',
    '--probe-scores',
    p64,
    '--activations',
    Q_FILE,
    '--method',
    'cos_cubed',
    '--min-norm',
    '0.001',
    '--out',
    out,
  ]);
  expect(r.code).toBe(0);
  expect(readFloatMatrix(out, 'sim').rows).toBe(24);
});

describe('bad input: one clear line naming the problem, exit code 1', () => {
  it.each([
    [
      'mismatched shapes',
      () => ['--activations', mkQ(399, 4)],
      /400 images \(rows\) but activations have 399/,
    ],
    [
      'NaN',
      () => ['--activations', mkQ(400, 4, NaN)],
      /activations Q has a non-finite value \(NaN\) at row 0, column 0/,
    ],
    [
      'D smaller than top_k',
      () => ['--activations', Q_FILE, '--top-k', '500'],
      /top_k \(500\) exceeds the number of probe images D \(400\)/,
    ],
    [
      'empty concept set',
      () => [
        '--activations',
        Q_FILE,
        '--concepts',
        mkText('empty.txt', '\n\n'),
        '--labels-out',
        join(dir, 'l.csv'),
      ],
      /the concept set is empty/,
    ],
    ['non-float .npy', () => ['--activations', mkInt()], /must be float32, float64 or float16, got int32/],
  ])('%s', async (_name, extra, message) => {
    const r = await cm(['dissect', '--probe-scores', P_FILE, '--out', join(dir, 'x.npy'), ...extra()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/); // no stack trace
  });
});

function mkQ(rows: number, cols: number, first?: number): string {
  const data = new Float32Array(rows * cols).map((_, i) => Math.sin(i));
  if (first !== undefined) data[0] = first;
  const file = join(dir, `q-${rows}-${cols}-${String(first)}.npy`);
  writeNpy(file, data, [rows, cols]);
  return file;
}
function mkText(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}
function mkInt(): string {
  const file = join(dir, 'int.npy');
  writeNpy(file, new Int32Array(400 * 2), [400, 2]);
  return file;
}
