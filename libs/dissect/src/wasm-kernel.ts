import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CmError } from '@cm/core';

/**
 * The likelihood kernel is WebAssembly SIMD written as text (likelihood.wat, next to this file)
 * and assembled at first use with wabt (the WebAssembly Binary Toolkit), so no binary is checked in.
 * Why not plain JavaScript: V8 does not vectorise, and the scalar loop measured ~2 ns per factor
 * here, ~2 s per core for a D=5000, S=20000, N=512 layer; the SIMD loop is ~0.3 ns.
 */
export type LikelihoodFn = (
  sm: number,
  groups: number,
  offs: number,
  cp: number,
  r0: number,
  r1: number,
  chunk: number,
  q: number,
  out: number,
  tot: number,
) => void;

/** softmax.wat: softmax of `rows` rows in place; the index of the first row with NaN / Inf, or -1. */
export type SoftmaxRowsFn = (
  addr: number,
  rows: number,
  cols: number,
  strideBytes: number,
  a: number,
) => number;

/** softmax.wat's row_stats: per row the (m, 1 / sum) softmax_rows would use, as float32 pairs at `stats`; first bad row or -1. */
export type RowStatsFn = (
  addr: number,
  rows: number,
  cols: number,
  strideBytes: number,
  a: number,
  stats: number,
) => number;

/** softmax.wat's exp_scale: x <- exp(a x - m_i) * inv_i in place (a block of columns, softmax_rows' values). */
export type ExpScaleFn = (
  addr: number,
  rows: number,
  cols: number,
  strideBytes: number,
  a: number,
  stats: number,
) => void;

export interface SoftmaxKernels {
  softmaxRows: SoftmaxRowsFn;
  rowStats: RowStatsFn;
  expScale: ExpScaleFn;
}

const compiled = new Map<string, Promise<WebAssembly.Module>>();

async function compileKernel(file: string): Promise<WebAssembly.Module> {
  // wabt ships an emscripten factory without types for the default export's call signature
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const init = require('wabt') as () => Promise<{
    parseWat(
      name: string,
      text: string,
      features: Record<string, boolean>,
    ): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void };
  }>;
  const wabt = await init();
  const source = readFileSync(join(__dirname, file), 'utf8');
  const parsed = wabt.parseWat(file, source, { simd: true, threads: true });
  try {
    return await WebAssembly.compile(parsed.toBinary({}).buffer);
  } finally {
    parsed.destroy();
  }
}

/** Compiled once per thread; instantiated once per shared memory (see instantiateLikelihood). */
export function likelihoodModule(file = 'likelihood.wat'): Promise<WebAssembly.Module> {
  let m = compiled.get(file);
  if (!m) {
    m = compileKernel(file).catch((e: unknown) => {
      compiled.delete(file);
      throw new CmError(
        'INTERNAL',
        `cannot assemble the WebAssembly kernel ${file}: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    });
    compiled.set(file, m);
  }
  return m;
}

export async function instantiateLikelihood(memory: WebAssembly.Memory): Promise<LikelihoodFn> {
  const instance = await WebAssembly.instantiate(await likelihoodModule(), { env: { mem: memory } });
  return instance.exports.likelihood as unknown as LikelihoodFn;
}

export async function instantiateSoftmax(memory: WebAssembly.Memory): Promise<SoftmaxKernels> {
  const instance = await WebAssembly.instantiate(await likelihoodModule('softmax.wat'), {
    env: { mem: memory },
  });
  return {
    softmaxRows: instance.exports.softmax_rows as unknown as SoftmaxRowsFn,
    rowStats: instance.exports.row_stats as unknown as RowStatsFn,
    expScale: instance.exports.exp_scale as unknown as ExpScaleFn,
  };
}
