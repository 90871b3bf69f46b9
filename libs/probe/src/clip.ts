import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import sharp, { type ResizeOptions } from 'sharp';
import { CmError, errorMessage, invalidArgument, notFound } from '@cm/core';
import { fitProjection, type Matrix } from '@cm/dissect';
import { writeBundle, type ProbeBundleData } from './bundle';
import { normaliseRows } from './linalg';
import { PCA_PROVENANCE } from './synthetic';

/**
 * User probe sets: a folder of PNG/JPEG images and a concept list, scored by a CLIP model kept
 * locally in the layout of public ONNX CLIP exports. P and the concept embeddings follow
 * CLIP-Dissect (method.md): I = image embeddings, T = text embeddings of the bare concept words
 * (no prompt template), rows L2-normalised, P = I T^T; the concept embeddings are the rows of T.
 */

/** Files a CLIP model folder must hold (the usual layout of public ONNX CLIP exports). */
export const CLIP_MODEL_FILES = [
  'config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'onnx/text_model.onnx',
  'onnx/vision_model.onnx',
] as const;

/** Throw a clear error listing every missing file of a CLIP model folder. */
export function checkClipModelDir(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw notFound(
      `CLIP model folder ${dir} does not exist`,
      { clipModelDir: dir },
      `expected a folder with ${CLIP_MODEL_FILES.join(', ')}`,
    );
  }
  const missing = CLIP_MODEL_FILES.filter(
    (f) => !existsSync(join(dir, f)) || statSync(join(dir, f)).size === 0,
  );
  if (missing.length > 0) {
    throw notFound(
      `CLIP model folder ${dir} is incomplete: missing ${missing.join(', ')}`,
      { clipModelDir: dir, missing },
      'copy a public ONNX CLIP export (e.g. Xenova/clip-vit-base-patch32: config.json, preprocessor_config.json, tokenizer files, onnx/text_model.onnx, onnx/vision_model.onnx) into it',
    );
  }
}

/**
 * Parse a concept list (format: docs/probe.md, "Concept file"): one concept per line, optionally
 * followed by a TAB and its category ('red<TAB>colour'); '#' starts a comment line; blank lines are
 * skipped. Only a TAB separates name and category, so a name may hold commas ('san francisco,
 * california'). A comma in a line without a TAB is refused as ambiguous: older lists used
 * 'name,category', and reading it either way silently could turn half a name into a category.
 * End the line with a TAB ('san francisco, california<TAB>') to keep the comma in a name that has
 * no category.
 */
export function parseConceptList(
  text: string,
  source = '<concepts>',
): { concepts: string[]; categories: string[] } {
  const concepts: string[] = [];
  const categories: string[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((rawLine, i) => {
    const where = `${source}:${i + 1}`;
    const line = rawLine.replace(/^[ ]+/, '');
    if (!line.trim() || line.startsWith('#')) return;
    const fields = line.split('\t');
    if (fields.length > 2)
      throw invalidArgument(`${where}: ${fields.length - 1} tabs; a line is 'name' or 'name<TAB>category'`, {
        file: source,
        line: i + 1,
      });
    const name = fields[0].trim();
    if (fields.length === 1 && name.includes(','))
      throw invalidArgument(
        `${where}: '${name}' has a comma but no tab: is '${name.slice(name.lastIndexOf(',') + 1).trim()}' part of the name or a category?`,
        { file: source, line: i + 1 },
        "only a TAB separates a category: write 'name<TAB>category', or end the line with a TAB to keep the comma in the name (docs/probe.md)",
      );
    const category = (fields[1] ?? '').trim() || 'concept';
    if (!name) throw invalidArgument(`${where}: empty concept name`, { file: source, line: i + 1 });
    const first = seen.get(name);
    if (first !== undefined)
      throw invalidArgument(`${where}: concept '${name}' repeats line ${first}`, {
        file: source,
        line: i + 1,
      });
    seen.set(name, i + 1);
    concepts.push(name);
    categories.push(category);
  });
  if (concepts.length === 0)
    throw invalidArgument(`${source}: no concepts (one per line, optionally 'name<TAB>category')`, {
      file: source,
    });
  return { concepts, categories };
}

/** PNG/JPEG files of a folder (not recursive), sorted by name. */
export function listImageFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw notFound(`image folder ${dir} does not exist`, { imagesDir: dir });
  const files = readdirSync(dir)
    .filter((f) => /\.(png|jpe?g)$/i.test(f) && statSync(join(dir, f)).isFile())
    .sort();
  if (files.length === 0)
    throw notFound(`image folder ${dir} holds no .png, .jpg or .jpeg files`, { imagesDir: dir });
  return files;
}

/** Decode an image to RGB (EXIF orientation applied, alpha flattened on white), resized with sharp. */
async function decodeRgb(
  file: string,
  resize: ResizeOptions,
): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await sharp(file)
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .resize(resize)
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  } catch (e) {
    throw invalidArgument(
      `cannot decode image ${file}: ${(e as Error).message}`,
      { file },
      'remove or convert it, or pass --skip-bad to leave unreadable images out',
    );
  }
}

export interface ClipBuildOptions {
  imagesDir: string;
  conceptsFile: string;
  clipModelDir: string;
  /** Bundle folder to write. */
  out: string;
  /** Side of the stored probe images (centre-cropped squares; default 64). */
  size?: number;
  /** Images per vision-model call (default 16). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Skip images that cannot be decoded (each reported to onSkip) instead of failing the build. */
  skipBad?: boolean;
  onSkip?: (file: string, reason: string) => void;
}

/** An image left out of a bundle by `skipBad`. */
export interface SkippedImage {
  file: string;
  reason: string;
}

type Transformers = typeof import('@huggingface/transformers');

function clipImageSide(modelDir: string): number {
  const cfg = JSON.parse(readFileSync(join(modelDir, 'preprocessor_config.json'), 'utf8')) as {
    size?: number | { shortest_edge?: number; height?: number };
  };
  const size = typeof cfg.size === 'number' ? cfg.size : (cfg.size?.shortest_edge ?? cfg.size?.height);
  if (!size || !Number.isFinite(size)) {
    throw new CmError(
      'CONFIG',
      `${join(modelDir, 'preprocessor_config.json')}: no image size (size.shortest_edge)`,
      { context: { clipModelDir: modelDir } },
    );
  }
  return size;
}

function toMatrix(t: { dims: readonly number[]; data: unknown }, what: string): Matrix {
  if (t.dims.length !== 2 || !(t.data instanceof Float32Array))
    throw new CmError('INTERNAL', `${what}: expected a 2-D float32 tensor, got dims [${t.dims.join(', ')}]`);
  return { rows: t.dims[0], cols: t.dims[1], data: Float32Array.from(t.data) };
}

/** Score the images and concepts with CLIP and assemble the bundle data (nothing written). */
export async function makeClipBundleData(opts: Omit<ClipBuildOptions, 'out'>): Promise<ProbeBundleData> {
  const modelDir = resolve(opts.clipModelDir);
  checkClipModelDir(modelDir);
  if (!existsSync(opts.conceptsFile))
    throw notFound(`concept file ${opts.conceptsFile} does not exist`, { conceptsFile: opts.conceptsFile });
  const { concepts, categories } = parseConceptList(
    readFileSync(opts.conceptsFile, 'utf8'),
    opts.conceptsFile,
  );
  const imageFiles = listImageFiles(opts.imagesDir);
  const size = opts.size ?? 64;
  if (!Number.isInteger(size) || size < 8 || size > 1024)
    throw invalidArgument(`image size must be an integer from 8 to 1024, got ${size}`, { size });
  const batchSize = opts.batchSize ?? 16;

  // Loaded lazily: bundle readers (the concept service) never pay for onnxruntime.
  const hf: Transformers = await import('@huggingface/transformers');
  hf.env.allowRemoteModels = false;
  hf.env.allowLocalModels = true;
  hf.env.localModelPath = dirname(modelDir) + sep;
  const modelId = basename(modelDir);
  let tokenizer, textModel, visionModel, processor;
  try {
    tokenizer = await hf.AutoTokenizer.from_pretrained(modelId);
    processor = await hf.AutoProcessor.from_pretrained(modelId);
    textModel = await hf.CLIPTextModelWithProjection.from_pretrained(modelId, { dtype: 'fp32' });
    visionModel = await hf.CLIPVisionModelWithProjection.from_pretrained(modelId, { dtype: 'fp32' });
  } catch (e) {
    throw new CmError('CONFIG', `cannot load the CLIP model in ${modelDir}: ${(e as Error).message}`, {
      context: { clipModelDir: modelDir },
      cause: e,
    });
  }

  try {
    // Text side: bare concept words, no prompt template (CLIP-Dissect).
    const textInputs = tokenizer(concepts, { padding: true, truncation: true });
    const textOut = (await textModel(textInputs)) as { text_embeds: { dims: number[]; data: unknown } };
    const t = normaliseRows(toMatrix(textOut.text_embeds, 'text_embeds'));

    // Image side, in batches; the stored probe image is a centre-cropped square of side `size`.
    // With skipBad an image that cannot be decoded is left out (and reported); the others keep
    // their order.
    const clipSide = clipImageSide(modelDir);
    const storedParts: Buffer[] = [];
    const kept: string[] = [];
    const embeds: Float32Array[] = [];
    let dim = 0;
    let raws: InstanceType<Transformers['RawImage']>[] = [];
    const flush = async (): Promise<void> => {
      if (raws.length === 0) return;
      const pixels = await processor(raws);
      const out = (await visionModel(pixels)) as { image_embeds: { dims: number[]; data: unknown } };
      const m = toMatrix(out.image_embeds, 'image_embeds');
      dim = m.cols;
      embeds.push(m.data);
      raws = [];
    };
    for (const [index, name] of imageFiles.entries()) {
      const file = join(opts.imagesDir, name);
      let small: Awaited<ReturnType<typeof decodeRgb>>;
      let forClip: Awaited<ReturnType<typeof decodeRgb>>;
      try {
        small = await decodeRgb(file, { width: size, height: size, fit: 'cover' });
        forClip = await decodeRgb(file, { width: clipSide, height: clipSide, fit: 'outside' });
      } catch (e) {
        if (!opts.skipBad) throw e;
        opts.onSkip?.(name, errorMessage(e).replace(/^cannot decode image \S+: /, ''));
        opts.onProgress?.(index + 1, imageFiles.length);
        continue;
      }
      storedParts.push(small.data);
      kept.push(name);
      raws.push(new hf.RawImage(new Uint8ClampedArray(forClip.data), forClip.width, forClip.height, 3));
      if (raws.length === batchSize) await flush();
      opts.onProgress?.(index + 1, imageFiles.length);
    }
    await flush();
    if (kept.length === 0)
      throw invalidArgument(
        `image folder ${opts.imagesDir}: none of its ${imageFiles.length} images could be decoded`,
        {
          imagesDir: opts.imagesDir,
        },
      );
    const stored = new Uint8Array(Buffer.concat(storedParts));
    if (dim !== t.cols)
      throw new CmError(
        'CONFIG',
        `CLIP model in ${modelDir}: image embeddings have ${dim} dimensions, text embeddings ${t.cols}`,
      );
    const imagesMatrix = normaliseRows({ rows: kept.length, cols: dim, data: concatFloat(embeds) });

    // P = I T^T, D x S.
    const d = imagesMatrix.rows;
    const s = t.rows;
    const p = new Float32Array(d * s);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < s; j++) {
        let acc = 0;
        for (let c = 0; c < dim; c++) acc += imagesMatrix.data[i * dim + c] * t.data[j * dim + c];
        p[i * s + j] = acc;
      }
    }
    const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as {
      _name_or_path?: string;
    };
    return {
      source: {
        kind: 'clip',
        model: config._name_or_path || modelId,
        imageFiles: kept,
        conceptsFile: basename(opts.conceptsFile),
      },
      probeScoresMode: 'clip',
      provenance: {
        probeScores:
          'clip: P = I T^T with I the CLIP image embeddings and T the CLIP text embeddings of the bare concept words (no prompt template), rows L2-normalised (CLIP-Dissect)',
        conceptEmbeddings:
          'clip: L2-normalised CLIP text embeddings of the bare concept words (the rows of T)',
        projection: PCA_PROVENANCE,
      },
      images: stored,
      imageShape: [d, size, size, 3],
      space: {
        concepts,
        categories,
        probeScores: { rows: d, cols: s, data: p },
        conceptEmbeddings: t,
        projection: fitProjection(t),
      },
    };
  } finally {
    await Promise.all([textModel.dispose(), visionModel.dispose()]);
  }
}

function concatFloat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Build a CLIP-scored bundle from an image folder and a concept list, write it to `out`. */
export async function buildClipBundle(
  opts: ClipBuildOptions,
): Promise<{ id: string; dir: string; data: ProbeBundleData }> {
  const data = await makeClipBundleData(opts);
  const id = await writeBundle(opts.out, data);
  return { id, dir: resolve(opts.out), data };
}
