import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { CmError, encodeNpy, notFound, readNpyInto, type NpyArray, type NpyDtype } from '@cm/core';
import { allocSoftmaxReadyMatrix, type ConceptSpace, type Matrix } from '@cm/dissect';

/**
 * The probe bundle on disk: one folder holding manifest.json and five .npy arrays.
 *
 *   manifest.json                  format, version, id, image shape, concepts + categories,
 *                                  how P / the embeddings / the projection were made, and for
 *                                  every array its file, dtype, shape and sha256
 *   images.npy                     uint8   D x H x W x 3  probe images
 *   probe_scores.npy               float32 D x S          P
 *   concept_embeddings.npy         float32 S x d          unit rows
 *   projection_components.npy      float32 d x 2          fixed 2D map (PCA axes)
 *   projection_mean.npy            float32 d
 *
 * The bundle id is the first 16 hex digits of sha256 over the manifest's canonical JSON without
 * the id field; since the manifest carries every array's sha256, the id is a content hash of the
 * whole bundle. Nothing time- or path-dependent goes into the manifest, so the same inputs give a
 * byte-identical bundle and the same id.
 */
export const BUNDLE_FORMAT = 'cm-probe-bundle';
export const BUNDLE_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

const ARRAY_FILES = {
  images: 'images.npy',
  probeScores: 'probe_scores.npy',
  conceptEmbeddings: 'concept_embeddings.npy',
  projectionComponents: 'projection_components.npy',
  projectionMean: 'projection_mean.npy',
} as const;
type ArrayRole = keyof typeof ARRAY_FILES;
const ARRAY_DTYPES: Record<ArrayRole, NpyDtype> = {
  images: 'uint8',
  probeScores: 'float32',
  conceptEmbeddings: 'float32',
  projectionComponents: 'float32',
  projectionMean: 'float32',
};

const arrayEntry = z.object({
  file: z.string(),
  dtype: z.enum(['uint8', 'float32']),
  shape: z.array(z.number().int().nonnegative()),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

const sourceSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('synthetic'),
    world: z.literal('shapes'),
    seed: z.number().int(),
    images: z.number().int(),
    size: z.number().int(),
  }),
  z.object({
    kind: z.literal('clip'),
    model: z.string(),
    imageFiles: z.array(z.string()),
    conceptsFile: z.string(),
  }),
]);
export type BundleSource = z.infer<typeof sourceSchema>;

const manifestSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  formatVersion: z.literal(BUNDLE_FORMAT_VERSION),
  id: z.string().regex(/^[0-9a-f]{16}$/),
  source: sourceSchema,
  imageShape: z.tuple([
    z.number().int().positive(),
    z.number().int().positive(),
    z.number().int().positive(),
    z.number().int().positive(),
  ]),
  concepts: z.array(z.object({ name: z.string().min(1), category: z.string().min(1) })).min(1),
  /** How each derived array was made, in words (shown by `cm probe inspect`). */
  provenance: z.object({ probeScores: z.string(), conceptEmbeddings: z.string(), projection: z.string() }),
  /** 'labelled' (ground truth) or 'clip' (CLIP-Dissect P = I T^T). */
  probeScoresMode: z.enum(['labelled', 'clip']),
  arrays: z.object({
    images: arrayEntry,
    probeScores: arrayEntry,
    conceptEmbeddings: arrayEntry,
    projectionComponents: arrayEntry,
    projectionMean: arrayEntry,
  }),
});
export type BundleManifest = z.infer<typeof manifestSchema>;

/** Everything needed to write a bundle. */
export interface ProbeBundleData {
  source: BundleSource;
  probeScoresMode: 'labelled' | 'clip';
  provenance: { probeScores: string; conceptEmbeddings: string; projection: string };
  /** D x H x W x 3, uint8 RGB. */
  images: Uint8Array;
  imageShape: [number, number, number, number];
  space: ConceptSpace;
}

/** A loaded, verified bundle. */
export interface ProbeBundle {
  id: string;
  dir: string;
  manifest: BundleManifest;
  images: Uint8Array;
  imageShape: [number, number, number, number];
  space: ConceptSpace;
}

/** sha256 of a file, read in chunks (used only to tell a changed file from an unreadable one). */
function hashOfFile(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(8 << 20);
    for (let at = 0; ;) {
      const n = readSync(fd, chunk, 0, chunk.length, at);
      if (n === 0) break;
      hash.update(chunk.subarray(0, n));
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** JSON with keys sorted at every level: the form the id is computed over. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function bundleIdOf(manifestWithoutId: Omit<BundleManifest, 'id'>): string {
  return sha256(Buffer.from(canonicalJson(manifestWithoutId), 'utf8')).slice(0, 16);
}

function checkData(data: ProbeBundleData): void {
  const [d, h, w, c] = data.imageShape;
  const { concepts, categories, probeScores: p, conceptEmbeddings: e, projection } = data.space;
  const fail = (why: string) => new CmError('INVALID_ARGUMENT', `probe bundle data: ${why}`);
  if (data.images.length !== d * h * w * c)
    throw fail(
      `images hold ${data.images.length} bytes, shape ${data.imageShape.join('x')} needs ${d * h * w * c}`,
    );
  if (concepts.length !== categories.length)
    throw fail(`${concepts.length} concepts but ${categories.length} categories`);
  if (new Set(concepts).size !== concepts.length) throw fail('concept names repeat');
  if (p.rows !== d || p.cols !== concepts.length || p.data.length !== d * concepts.length)
    throw fail(`P is ${p.rows} x ${p.cols}, expected ${d} x ${concepts.length}`);
  if (e.rows !== concepts.length || e.data.length !== e.rows * e.cols)
    throw fail(`concept embeddings are ${e.rows} x ${e.cols}, expected ${concepts.length} rows`);
  if (projection.components.rows !== e.cols || projection.components.cols !== 2)
    throw fail(
      `projection components are ${projection.components.rows} x ${projection.components.cols}, expected ${e.cols} x 2`,
    );
  if (projection.mean.length !== e.cols)
    throw fail(`projection mean has ${projection.mean.length} values, expected ${e.cols}`);
  for (const m of [p, e, projection.components])
    if (m.data.some((v) => !Number.isFinite(v))) throw fail('arrays contain NaN or infinite values');
}

/** Encode a bundle: the manifest and the array files, all as bytes. Pure. */
export function encodeBundle(data: ProbeBundleData): {
  id: string;
  manifest: BundleManifest;
  files: Map<string, Buffer>;
} {
  checkData(data);
  const arrays: Record<ArrayRole, { data: Uint8Array | Float32Array; shape: number[] }> = {
    images: { data: data.images, shape: [...data.imageShape] },
    probeScores: {
      data: data.space.probeScores.data,
      shape: [data.space.probeScores.rows, data.space.probeScores.cols],
    },
    conceptEmbeddings: {
      data: data.space.conceptEmbeddings.data,
      shape: [data.space.conceptEmbeddings.rows, data.space.conceptEmbeddings.cols],
    },
    projectionComponents: {
      data: data.space.projection.components.data,
      shape: [data.space.projection.components.rows, 2],
    },
    projectionMean: { data: data.space.projection.mean, shape: [data.space.projection.mean.length] },
  };
  const files = new Map<string, Buffer>();
  const entries = {} as BundleManifest['arrays'];
  for (const role of Object.keys(ARRAY_FILES) as ArrayRole[]) {
    const bytes = encodeNpy(arrays[role].data, arrays[role].shape, ARRAY_DTYPES[role]);
    files.set(ARRAY_FILES[role], bytes);
    entries[role] = {
      file: ARRAY_FILES[role],
      dtype: ARRAY_DTYPES[role] as 'uint8' | 'float32',
      shape: arrays[role].shape,
      sha256: sha256(bytes),
    };
  }
  const withoutId: Omit<BundleManifest, 'id'> = {
    format: BUNDLE_FORMAT,
    formatVersion: BUNDLE_FORMAT_VERSION,
    source: data.source,
    imageShape: data.imageShape,
    concepts: data.space.concepts.map((name, i) => ({ name, category: data.space.categories[i] })),
    provenance: data.provenance,
    probeScoresMode: data.probeScoresMode,
    arrays: entries,
  };
  const id = bundleIdOf(withoutId);
  const { format, formatVersion, ...rest } = withoutId;
  // Field order of the written file: format, version, id first.
  const manifest: BundleManifest = { format, formatVersion, id, ...rest };
  files.set(MANIFEST_FILE, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8'));
  return { id, manifest, files };
}

/**
 * Write a bundle into `dir` (created if needed; the bundle's own files are replaced) and return
 * its id. The manifest is written last, so a crash mid-write leaves no loadable half-bundle.
 */
export async function writeBundle(dir: string, data: ProbeBundleData): Promise<string> {
  const { id, files } = encodeBundle(data);
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, MANIFEST_FILE), { force: true });
  for (const [name, bytes] of files) if (name !== MANIFEST_FILE) writeFileSync(join(dir, name), bytes);
  writeFileSync(join(dir, MANIFEST_FILE), files.get(MANIFEST_FILE)!);
  return id;
}

/**
 * Write a bundle into a bundle directory as `<root>/<id>/` (the layout BundleDirectory reads).
 * Written to a temporary folder first and renamed, so readers never see a partial bundle.
 */
export async function writeBundleInto(
  root: string,
  data: ProbeBundleData,
): Promise<{ id: string; dir: string }> {
  const { id } = encodeBundle(data);
  const dir = join(root, id);
  if (existsSync(join(dir, MANIFEST_FILE))) return { id, dir }; // same content hash: already there
  const tmp = join(root, `.tmp-${id}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  await writeBundle(tmp, data);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return { id, dir };
}

function corrupt(dir: string, file: string, why: string, cause?: unknown): CmError {
  const path = join(dir, file);
  return new CmError('CORRUPT', `probe bundle ${dir}: ${file} ${why}`, {
    context: { bundle: dir, file: path },
    hint: 'rebuild the bundle (cm probe make / cm probe build)',
    cause,
  });
}

export interface LoadBundleOptions {
  /**
   * Store P where its softmax will be (`allocSoftmaxReadyMatrix` of @cm/dissect, room for `slots`
   * workers): the first wpmi / soft_wpmi dissection replaces P by softmax(a P) in place, so P and
   * its softmax cost one D x S array. For a service whose method is wpmi or soft_wpmi; after that
   * first dissection the bundle's P holds the softmax, and cos / rank_reorder refuse it.
   */
  softmaxInPlace?: { slots: number };
}

/** Read and verify a bundle: manifest schema, id, every array's sha256, dtype and shape, and the
 * shapes' consistency with each other. Any mismatch is CmError('CORRUPT') naming the file. */
export function loadBundle(dir: string, options: LoadBundleOptions = {}): ProbeBundle {
  const absDir = resolve(dir);
  const manifestPath = join(absDir, MANIFEST_FILE);
  if (!existsSync(absDir) || !statSync(absDir).isDirectory()) {
    throw notFound(`probe bundle ${dir} does not exist or is not a folder`, { bundle: absDir });
  }
  if (!existsSync(manifestPath)) {
    throw notFound(
      `probe bundle ${dir}: ${MANIFEST_FILE} is missing`,
      { bundle: absDir, file: manifestPath },
      'is this a probe bundle folder? make one with cm probe make',
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (e) {
    throw corrupt(absDir, MANIFEST_FILE, `is not valid JSON: ${(e as Error).message}`, e);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw corrupt(
      absDir,
      MANIFEST_FILE,
      `does not match the bundle format v${BUNDLE_FORMAT_VERSION}: ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  const manifest = parsed.data;
  const { id: storedId, ...withoutId } = manifest;
  const expectedId = bundleIdOf(withoutId);
  if (expectedId !== storedId)
    throw corrupt(
      absDir,
      MANIFEST_FILE,
      `was edited: its content hash is ${expectedId}, its id says ${storedId}`,
    );

  const [d, h, w] = manifest.imageShape;
  const s = manifest.concepts.length;
  const dim = manifest.arrays.conceptEmbeddings.shape[1];
  const expectedShapes: Record<ArrayRole, number[]> = {
    images: [d, h, w, 3],
    probeScores: [d, s],
    conceptEmbeddings: [s, dim],
    projectionComponents: [dim, 2],
    projectionMean: [dim],
  };
  const read = (role: ArrayRole): NpyArray => {
    const entry = manifest.arrays[role];
    if (entry.file !== ARRAY_FILES[role])
      throw corrupt(absDir, MANIFEST_FILE, `names ${entry.file} for ${role}, expected ${ARRAY_FILES[role]}`);
    const path = join(absDir, entry.file);
    if (!existsSync(path)) throw corrupt(absDir, entry.file, 'is missing');
    const mismatch = (): CmError =>
      corrupt(
        absDir,
        entry.file,
        `does not match its hash in the manifest (changed or truncated; ${statSync(path).size} bytes)`,
      );
    // One read, straight into the array's final buffer, hashed on the way: a big P costs its own
    // size once. P goes into a SharedArrayBuffer, which the dissection workers read in place.
    const hash = createHash('sha256');
    let buffer: ArrayBuffer | SharedArrayBuffer | undefined;
    // P in a softmax memory (options.softmaxInPlace): a view into it, not a whole buffer
    let view: Float32Array | undefined;
    const want = expectedShapes[role];
    let arr: NpyArray;
    try {
      const h = readNpyInto(path, {
        allocate: (header) => {
          if (header.dtype !== ARRAY_DTYPES[role])
            throw corrupt(absDir, entry.file, `has dtype ${header.dtype}, expected ${ARRAY_DTYPES[role]}`);
          if (header.shape.length !== want.length || header.shape.some((n, i) => n !== want[i])) {
            throw corrupt(
              absDir,
              entry.file,
              `has shape (${header.shape.join(', ')}), expected (${want.join(', ')})`,
            );
          }
          if (role === 'probeScores' && options.softmaxInPlace) {
            const m = allocSoftmaxReadyMatrix(want[0], want[1], options.softmaxInPlace);
            view = m.data;
            return new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength);
          }
          buffer =
            role === 'probeScores'
              ? new SharedArrayBuffer(header.dataBytes)
              : new ArrayBuffer(header.dataBytes);
          return new Uint8Array(buffer);
        },
        onBytes: (chunk) => hash.update(chunk),
      });
      arr = {
        dtype: h.dtype,
        shape: h.shape,
        data:
          view ??
          (h.dtype === 'uint8'
            ? new Uint8Array(buffer as ArrayBufferLike)
            : new Float32Array(buffer as ArrayBufferLike)),
      };
    } catch (e) {
      // a changed file is reported as such, whatever its bytes now fail on
      if (hashOfFile(path) !== entry.sha256) throw mismatch();
      if (e instanceof CmError && e.code === 'CORRUPT') throw e;
      throw corrupt(absDir, entry.file, `is not a readable .npy file: ${(e as Error).message}`, e);
    }
    if (hash.digest('hex') !== entry.sha256) throw mismatch();
    return arr;
  };
  const matrix = (role: ArrayRole): Matrix => {
    const arr = read(role);
    return { rows: arr.shape[0], cols: arr.shape[1], data: arr.data as Float32Array };
  };
  const images = read('images').data as Uint8Array;
  const probeScores = matrix('probeScores');
  const conceptEmbeddings = matrix('conceptEmbeddings');
  const components = matrix('projectionComponents');
  const mean = read('projectionMean').data as Float32Array;
  return {
    id: storedId,
    dir: absDir,
    manifest,
    images,
    imageShape: [d, h, w, 3],
    space: {
      concepts: manifest.concepts.map((c) => c.name),
      categories: manifest.concepts.map((c) => c.category),
      probeScores,
      conceptEmbeddings,
      projection: { components, mean },
    },
  };
}

/**
 * A folder of bundles stored as `<root>/<id>/`, as the concept service uses it: bundles are
 * loaded (and verified) on first use and cached by id.
 */
export class BundleDirectory {
  private readonly cache = new Map<string, ProbeBundle>();
  readonly root: string;
  private readonly options: LoadBundleOptions;

  /** `options` apply to every bundle loaded (see LoadBundleOptions: the concept service's softmaxInPlace). */
  constructor(root: string, options: LoadBundleOptions = {}) {
    this.root = resolve(root);
    this.options = options;
  }

  /** Ids of the bundles present (folders with a manifest), sorted. */
  list(): string[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root, { withFileTypes: true })
      .filter(
        (e) =>
          e.isDirectory() &&
          /^[0-9a-f]{16}$/.test(e.name) &&
          existsSync(join(this.root, e.name, MANIFEST_FILE)),
      )
      .map((e) => e.name)
      .sort();
  }

  get(id: string): ProbeBundle {
    const cached = this.cache.get(id);
    if (cached) return cached;
    if (!/^[0-9a-f]{16}$/.test(id)) {
      throw new CmError('INVALID_ARGUMENT', `'${id}' is not a probe bundle id (16 hex digits)`, {
        context: { bundleId: id },
      });
    }
    const dir = join(this.root, id);
    if (!existsSync(join(dir, MANIFEST_FILE))) {
      throw notFound(
        `probe bundle ${id} is not in ${this.root}`,
        { bundleId: id, root: this.root },
        `known bundles: ${this.list().join(', ') || 'none'}`,
      );
    }
    const bundle = loadBundle(dir, this.options);
    if (bundle.id !== id)
      throw corrupt(dir, MANIFEST_FILE, `holds bundle ${bundle.id}, but its folder is named ${id}`);
    this.cache.set(id, bundle);
    return bundle;
  }
}
