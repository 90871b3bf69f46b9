import * as tf from '@tensorflow/tfjs';
import { CmError, createLogger, type Logger } from '@cm/core';
import { registerTrainingKernels } from './kernels';

/**
 * Run-time backend selection, fastest first:
 *   1. @tensorflow/tfjs-node-gpu  (native TensorFlow with CUDA)   -> backend 'tensorflow'
 *   2. @tensorflow/tfjs-node      (native TensorFlow, CPU)        -> backend 'tensorflow'
 *   3. @tensorflow/tfjs-backend-wasm (XNNPACK, SIMD)              -> backend 'wasm', plus the
 *      gradient kernels it lacks, registered by ./kernels
 *   4. the plain JS cpu backend (always there, slow)
 * The native packages are not dependencies of the project (they download binaries at install
 * time, which offline machines cannot do); `npm install @tensorflow/tfjs-node@4.22.0` makes them
 * available and they are picked up here with no other change.
 */
export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** tf.getBackend() after selection: 'tensorflow' | 'wasm' | 'cpu'. */
  name: string;
  /** Which package provided it. */
  provider:
    | '@tensorflow/tfjs-node-gpu'
    | '@tensorflow/tfjs-node'
    | '@tensorflow/tfjs-backend-wasm'
    | '@tensorflow/tfjs-backend-cpu';
  /** Kernels this project registered on the backend (wasm: the missing gradients). */
  registeredKernels: string[];
  /** Threads the backend computes with (wasm in Node: 1, the threaded build needs browser workers). */
  threads: number;
  /** Why the faster options were not used. */
  skipped: string[];
}

let selected: BackendInfo | undefined;

/** require() of an optional package; undefined when it is not installed or fails to load. */
function tryRequire(name: string): { ok: true } | { ok: false; why: string } {
  try {
    // Indirect so bundlers and the type checker do not look for packages we do not depend on.
    const req: NodeRequire = require;
    req(name);
    return { ok: true };
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    return { ok: false, why: /Cannot find module/.test(msg) ? 'not installed' : msg.split('\n')[0] };
  }
}

async function useWasm(threads: number | undefined, skipped: string[]): Promise<BackendInfo | undefined> {
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Multithreaded wasm needs SharedArrayBuffer workers, which tfjs only enables in browsers
    // (tfjs#3830); the count still matters if a later release lifts that.
    if (threads !== undefined) wasm.setThreadsCount(threads);
    if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend(wasm) returned false');
    await tf.ready();
    const registeredKernels = registerTrainingKernels('wasm');
    let actual = 1;
    try {
      actual = wasm.getThreadsCount();
    } catch {
      actual = 1;
    }
    return {
      name: 'wasm',
      provider: '@tensorflow/tfjs-backend-wasm',
      registeredKernels,
      threads: actual,
      skipped,
    };
  } catch (e) {
    skipped.push(`wasm: ${(e as Error).message}`);
    return undefined;
  }
}

/**
 * Pick and initialise the backend (once per process; later calls return the first choice).
 * `preference` forces one (CM_TRAIN_BACKEND in the trainer); forcing one that cannot load is an error.
 */
export async function selectBackend(
  opts: { preference?: BackendPreference; threads?: number; log?: Logger } = {},
): Promise<BackendInfo> {
  if (selected) return selected;
  const log = opts.log ?? createLogger('train');
  const preference = opts.preference ?? 'auto';
  const skipped: string[] = [];
  let info: BackendInfo | undefined;
  // Production mode: no per-op debug checks, and no "install tfjs-node" banner on stderr.
  tf.enableProdMode();

  if (preference === 'auto' || preference === 'tensorflow') {
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const) {
      const r = tryRequire(pkg);
      if (r.ok && (await tf.setBackend('tensorflow'))) {
        await tf.ready();
        info = { name: 'tensorflow', provider: pkg, registeredKernels: [], threads: 0, skipped };
        break;
      }
      skipped.push(`${pkg}: ${r.ok ? 'loaded but backend tensorflow did not initialise' : r.why}`);
    }
    if (!info && preference === 'tensorflow') {
      throw new CmError(
        'CONFIG',
        'the tensorflow backend was requested but neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads',
        {
          context: { skipped },
          hint: 'npm install --save-exact @tensorflow/tfjs-node@4.22.0 (needs internet), or use --backend wasm',
        },
      );
    }
  }
  if (!info && (preference === 'auto' || preference === 'wasm')) {
    info = await useWasm(opts.threads, skipped);
    if (!info && preference === 'wasm') {
      throw new CmError('CONFIG', 'the wasm backend was requested but does not initialise', {
        context: { skipped },
      });
    }
  }
  if (!info) {
    await tf.setBackend('cpu');
    await tf.ready();
    info = {
      name: 'cpu',
      provider: '@tensorflow/tfjs-backend-cpu',
      registeredKernels: [],
      threads: 1,
      skipped,
    };
  }
  selected = info;
  log.info(`tfjs backend: ${info.name} (${info.provider})`, {
    threads: info.threads,
    ...(info.registeredKernels.length ? { registeredKernels: info.registeredKernels } : {}),
    ...(skipped.length ? { skipped } : {}),
  });
  return info;
}

/** The backend chosen by selectBackend in this process, if any. */
export function selectedBackend(): BackendInfo | undefined {
  return selected;
}
