/**
 * Random-initialisation baselines of the learned-concept figure (docs/dissect.md, "Learned
 * concepts"): per (probe bundle, architecture, dissection method), the dissections of the monitored
 * layers of K randomly initialised copies of the model, as @cm/dissect's RandomInitLayer (per
 * neuron: label, evidence, verdict; per concept: the ceiling). Computed once and kept in a
 * BaselineStore, so that every later run of the same architecture on the same bundle has its learned
 * figure from its first checkpoint without sending the baseline again.
 *
 * The cache is a file per key under <CM_HOME>/baselines (FileBaselineStore) in both modes: the
 * concept service does not read the ClickHouse store, and a baseline is a few S-float vectors per
 * layer, not rows anyone queries. Replicas each keep their own (each computes it once).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CmError } from '@cm/core';
import type { RunSpec } from '@cm/contracts';
import type { DissectOptions, RandomInitLayer } from '@cm/dissect';

/** One architecture's baseline: per monitored layer, its K random initialisations. */
export interface StoredBaseline {
  key: string;
  bundleId: string;
  model: string;
  inits: number;
  layers: Record<string, RandomInitLayer[]>;
}

export interface BaselineStore {
  load(key: string): Promise<StoredBaseline | undefined>;
  save(baseline: StoredBaseline): Promise<void>;
}

/**
 * The cache key: the bundle, the architecture (the model's name and its monitored layers' names,
 * widths and kinds: two runs that agree on these are taken to be the same architecture) and the
 * dissection method with its parameters (evidence is method-specific).
 */
export function baselineKey(spec: RunSpec, dissect: Omit<DissectOptions, 'previousTop1'> = {}): string {
  const architecture = {
    bundle: spec.bundleId,
    model: spec.model,
    layers: spec.layers.map((l) => [l.name, l.width, l.kind]),
    method: dissect.method ?? 'soft_wpmi',
    params: dissect.params ?? {},
  };
  return createHash('sha1').update(JSON.stringify(architecture)).digest('hex');
}

/** In this process only (tests, and monitors without a home folder). */
export class MemoryBaselineStore implements BaselineStore {
  private readonly baselines = new Map<string, StoredBaseline>();
  load(key: string): Promise<StoredBaseline | undefined> {
    return Promise.resolve(this.baselines.get(key));
  }
  save(baseline: StoredBaseline): Promise<void> {
    this.baselines.set(baseline.key, baseline);
    return Promise.resolve();
  }
}

const b64 = (a: ArrayBufferView): string =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
function fromB64<T>(s: unknown, make: (b: ArrayBuffer) => T, what: string): T {
  if (typeof s !== 'string') throw new Error(`${what} is not a base64 string`);
  const buf = Buffer.from(s, 'base64');
  return make(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

/** One JSON file per key in `dir` (written to a temporary name, then renamed: never half a file). */
export class FileBaselineStore implements BaselineStore {
  constructor(private readonly dir: string) {}

  private file(key: string): string {
    if (!/^[0-9a-f]{40}$/.test(key)) throw new CmError('INVALID_ARGUMENT', `bad baseline key ${key}`);
    return join(this.dir, `${key}.json`);
  }

  async load(key: string): Promise<StoredBaseline | undefined> {
    let text: string;
    try {
      text = await readFile(this.file(key), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const raw = JSON.parse(text) as {
        key: string;
        bundleId: string;
        model: string;
        inits: number;
        layers: Record<string, Record<string, unknown>[]>;
      };
      if (raw.key !== key) throw new Error(`it holds key ${raw.key}`);
      const layers: Record<string, RandomInitLayer[]> = {};
      for (const [name, inits] of Object.entries(raw.layers)) {
        layers[name] = inits.map((i) => ({
          conceptIndex: fromB64(i.conceptIndex, (b) => new Int32Array(b), 'conceptIndex'),
          evidence: fromB64(i.evidence, (b) => new Float32Array(b), 'evidence'),
          interpretable: Array.from(
            fromB64(i.interpretable, (b) => new Uint8Array(b), 'interpretable'),
            Boolean,
          ),
          conceptCeiling: fromB64(i.conceptCeiling, (b) => new Float32Array(b), 'conceptCeiling'),
        }));
      }
      return { key, bundleId: raw.bundleId, model: raw.model, inits: raw.inits, layers };
    } catch (e) {
      throw new CmError('CORRUPT', `random-init baseline ${this.file(key)}: ${(e as Error).message}`, {
        context: { key },
        cause: e,
        hint: 'delete the file: the next run of that architecture computes the baseline again',
      });
    }
  }

  async save(baseline: StoredBaseline): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const layers: Record<string, Record<string, string>[]> = {};
    for (const [name, inits] of Object.entries(baseline.layers)) {
      layers[name] = inits.map((i) => ({
        conceptIndex: b64(Int32Array.from(i.conceptIndex)),
        evidence: b64(Float32Array.from(i.evidence)),
        interpretable: b64(Uint8Array.from(Array.from(i.interpretable), (v) => (v ? 1 : 0))),
        conceptCeiling: b64(Float32Array.from(i.conceptCeiling)),
      }));
    }
    const file = this.file(baseline.key);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ ...baseline, layers }));
    await rename(tmp, file);
  }
}
