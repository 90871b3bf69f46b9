/**
 * Random-initialisation baselines of the learned-concept figure (docs/dissect.md, "Learned
 * concepts"): per (probe bundle, architecture, dissection method), the dissections of the monitored
 * layers of K randomly initialised copies of the model, as @cm/dissect's RandomInitLayer (per
 * neuron: label, evidence, verdict; per concept: the ceiling). Computed once and kept in a
 * BaselineStore, so that every later run of the same architecture on the same bundle has its learned
 * figure from its first checkpoint without sending the baseline again.
 *
 * A store keeps each initialisation as it is dissected (saveInit), then the complete baseline
 * (save); both are written once and the first value written stays. So a concept-service replica
 * that dies after some of a run's initialisations leaves them to the replica the trainer fails over
 * to, which needs only the rest; and two replicas (or two runs of an architecture) that complete a
 * baseline at once end up with one: every replica computes a run's learned figure against the same
 * baseline. The concept service keeps them in the JetStream KV bucket its replicas share (@cm/bus
 * openBaselineKv); all-in-one mode in files under <CM_HOME>/baselines (FileBaselineStore).
 */
import { createHash } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CmError } from '@cm/core';
import { baselineLayerFromJson, baselineLayerToJson, type RunSpec } from '@cm/contracts';
import type { DissectOptions, RandomInitLayer } from '@cm/dissect';

/** One architecture's baseline: per monitored layer, its K random initialisations. */
export interface StoredBaseline {
  key: string;
  bundleId: string;
  model: string;
  inits: number;
  layers: Record<string, RandomInitLayer[]>;
}

/** One random initialisation: its dissected layers by name. */
export type BaselineInit = Record<string, RandomInitLayer>;

export interface BaselineStore {
  /** The complete baseline of an architecture key, or undefined while there is none. */
  load(key: string): Promise<StoredBaseline | undefined>;
  /** Keep random initialisation `index` of `key` unless one is kept (the first stays); resolves once durable. */
  saveInit(key: string, index: number, init: BaselineInit): Promise<void>;
  /** The initialisations kept under `key` among `indices` that hold every one of `layers`. */
  loadInits(
    key: string,
    indices: readonly number[],
    layers: readonly string[],
  ): Promise<Map<number, BaselineInit>>;
  /** Save the complete baseline unless one is saved; resolves to the one kept (this one or the earlier one). */
  save(baseline: StoredBaseline): Promise<StoredBaseline>;
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
  private readonly inits = new Map<string, Map<number, BaselineInit>>();

  load(key: string): Promise<StoredBaseline | undefined> {
    return Promise.resolve(this.baselines.get(key));
  }

  saveInit(key: string, index: number, init: BaselineInit): Promise<void> {
    const kept = this.inits.get(key) ?? new Map<number, BaselineInit>();
    this.inits.set(key, kept);
    if (!kept.has(index)) kept.set(index, init);
    return Promise.resolve();
  }

  loadInits(
    key: string,
    indices: readonly number[],
    layers: readonly string[],
  ): Promise<Map<number, BaselineInit>> {
    const out = new Map<number, BaselineInit>();
    for (const index of indices) {
      const init = this.inits.get(key)?.get(index);
      if (init && layers.every((l) => init[l])) out.set(index, init);
    }
    return Promise.resolve(out);
  }

  save(baseline: StoredBaseline): Promise<StoredBaseline> {
    const kept = this.baselines.get(baseline.key) ?? baseline;
    this.baselines.set(baseline.key, kept);
    return Promise.resolve(kept);
  }

  /** Keys of the complete baselines (tests). */
  keys(): Promise<string[]> {
    return Promise.resolve([...this.baselines.keys()]);
  }
}

/** Write `text` to `file` unless it exists (a temporary file hard-linked into place); false when it existed. */
async function createFile(file: string, text: string): Promise<boolean> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, text);
  try {
    await link(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * One JSON file per key in `dir` (`<key>.json`) and one per kept initialisation
 * (`<key>.init-<index>.json`), each written under a temporary name and linked into place: never
 * half a file, and the first one written stays.
 */
export class FileBaselineStore implements BaselineStore {
  constructor(private readonly dir: string) {}

  private file(key: string, suffix = ''): string {
    if (!/^[0-9a-f]{40}$/.test(key)) throw new CmError('INVALID_ARGUMENT', `bad baseline key ${key}`);
    return join(this.dir, `${key}${suffix}.json`);
  }

  private corrupt(file: string, key: string, e: unknown): CmError {
    return new CmError('CORRUPT', `random-init baseline ${file}: ${(e as Error).message}`, {
      context: { key },
      cause: e,
      hint: 'delete the file: the next run of that architecture computes the baseline again',
    });
  }

  async load(key: string): Promise<StoredBaseline | undefined> {
    const file = this.file(key);
    const text = await readIfThere(file);
    if (text === undefined) return undefined;
    try {
      const raw = JSON.parse(text) as {
        key: string;
        bundleId: string;
        model: string;
        inits: number;
        layers: Record<string, unknown[]>;
      };
      if (raw.key !== key) throw new Error(`it holds key ${raw.key}`);
      const layers: Record<string, RandomInitLayer[]> = {};
      for (const [name, inits] of Object.entries(raw.layers))
        layers[name] = inits.map((i, k) => baselineLayerFromJson(i, `layer ${name} init ${k}`));
      return { key, bundleId: raw.bundleId, model: raw.model, inits: raw.inits, layers };
    } catch (e) {
      throw this.corrupt(file, key, e);
    }
  }

  async saveInit(key: string, index: number, init: BaselineInit): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const layers = Object.fromEntries(
      Object.entries(init).map(([name, l]) => [name, baselineLayerToJson(l)]),
    );
    await createFile(this.file(key, `.init-${index}`), JSON.stringify({ key, index, layers }));
  }

  async loadInits(
    key: string,
    indices: readonly number[],
    layers: readonly string[],
  ): Promise<Map<number, BaselineInit>> {
    const out = new Map<number, BaselineInit>();
    for (const index of indices) {
      const file = this.file(key, `.init-${index}`);
      const text = await readIfThere(file);
      if (text === undefined) continue;
      try {
        const raw = JSON.parse(text) as { key: string; index: number; layers: Record<string, unknown> };
        if (raw.key !== key || raw.index !== index)
          throw new Error(`it holds init ${raw.index} of key ${raw.key}`);
        if (!layers.every((l) => raw.layers[l])) continue;
        out.set(
          index,
          Object.fromEntries(layers.map((l) => [l, baselineLayerFromJson(raw.layers[l], `layer ${l}`)])),
        );
      } catch (e) {
        throw this.corrupt(file, key, e);
      }
    }
    return out;
  }

  async save(baseline: StoredBaseline): Promise<StoredBaseline> {
    await mkdir(this.dir, { recursive: true });
    const layers: Record<string, unknown[]> = {};
    for (const [name, inits] of Object.entries(baseline.layers))
      layers[name] = inits.map(baselineLayerToJson);
    if (await createFile(this.file(baseline.key), JSON.stringify({ ...baseline, layers }))) return baseline;
    return (await this.load(baseline.key)) ?? baseline;
  }
}
