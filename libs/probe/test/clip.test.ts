import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, sep } from 'node:path';
import sharp from 'sharp';
import { CmError } from '@cm/core';
import { buildClipBundle, CLIP_MODEL_FILES, loadBundle, parseConceptList, renderProbeWorld } from '../src';

const FIXTURE = join(__dirname, 'fixtures', 'tiny-clip');
const CONCEPTS = ['red', 'blue', 'green', 'circle', 'square', 'striped', 'dog', 'sky background'];
let work: string;
let imagesDir: string;
let conceptsFile: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'cm-probe-clip-'));
  imagesDir = join(work, 'images');
  mkdirSync(imagesDir);
  // A user-like folder: PNG and JPEG, different sizes, an RGBA and a grey image, a duplicate,
  // and a file that is not an image (ignored by extension).
  const world = renderProbeWorld({ images: 5, seed: 3, size: 64 });
  const raw = (i: number) => Buffer.from(world.images.subarray(i * 64 * 64 * 3, (i + 1) * 64 * 64 * 3));
  const from = (i: number) => sharp(raw(i), { raw: { width: 64, height: 64, channels: 3 } });
  await from(0).resize(32, 32).png().toFile(join(imagesDir, 'a-32px.png'));
  await from(1).png().toFile(join(imagesDir, 'b.png'));
  await from(1).png().toFile(join(imagesDir, 'b-copy.png'));
  await from(2).resize(96, 64, { fit: 'fill' }).jpeg({ quality: 90 }).toFile(join(imagesDir, 'c-wide.jpg'));
  await from(3).ensureAlpha(0.5).png().toFile(join(imagesDir, 'd-rgba.png'));
  await from(4).greyscale().jpeg().toFile(join(imagesDir, 'E-grey.JPEG'));
  writeFileSync(join(imagesDir, 'notes.txt'), 'not an image');
  conceptsFile = join(work, 'concepts.txt');
  writeFileSync(
    conceptsFile,
    [
      '# colours first',
      'red\tcolour',
      'blue\tcolour',
      'green',
      '',
      'circle\tshape',
      'square\tshape',
      'striped\ttexture',
      'dog\tobject',
      'sky background\tscene',
    ].join('\n'),
  );
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('CLIP probe bundles (tiny random CLIP fixture)', () => {
  it('builds a bundle end to end: P of the right shape, unit embedding rows, P = I T^T', async () => {
    const out = join(work, 'bundle');
    const { id, data } = await buildClipBundle({
      imagesDir,
      conceptsFile,
      clipModelDir: FIXTURE,
      out,
      size: 48,
      batchSize: 4,
    });
    const bundle = loadBundle(out);
    expect(bundle.id).toBe(id);
    const files = ['a-32px.png', 'b-copy.png', 'b.png', 'c-wide.jpg', 'd-rgba.png', 'E-grey.JPEG'].sort();
    expect(bundle.manifest.source).toEqual({
      kind: 'clip',
      model: 'cm-tiny-random-clip',
      imageFiles: files,
      conceptsFile: 'concepts.txt',
    });
    expect(bundle.manifest.probeScoresMode).toBe('clip');
    expect(bundle.imageShape).toEqual([6, 48, 48, 3]);
    expect(bundle.space.concepts).toEqual(CONCEPTS);
    expect(bundle.space.categories).toEqual([
      'colour',
      'colour',
      'concept',
      'shape',
      'shape',
      'texture',
      'object',
      'scene',
    ]);

    const { probeScores: p, conceptEmbeddings: t } = bundle.space;
    expect([p.rows, p.cols]).toEqual([6, CONCEPTS.length]);
    expect([t.rows, t.cols]).toEqual([CONCEPTS.length, 32]);
    for (let j = 0; j < t.rows; j++) {
      let ss = 0;
      for (let c = 0; c < t.cols; c++) ss += t.data[j * t.cols + c] ** 2;
      expect(Math.sqrt(ss)).toBeCloseTo(1, 5);
    }
    for (const v of p.data) expect(Math.abs(v)).toBeLessThanOrEqual(1 + 1e-5);
    // the same image twice scores the same; different images score differently
    const row = (i: number) => Array.from(p.data.subarray(i * p.cols, (i + 1) * p.cols));
    const b = files.indexOf('b.png');
    const bCopy = files.indexOf('b-copy.png');
    expect(row(bCopy)).toEqual(row(b));
    expect(row(files.indexOf('a-32px.png'))).not.toEqual(row(b));
    expect(data.space.projection.components.rows).toBe(32);

    // Independent check on the 32 px image (no resizing on either path): embed it and the bare
    // concept words with the model directly and compare with the bundle's P row and embeddings.
    const hf = await import('@huggingface/transformers');
    hf.env.allowRemoteModels = false;
    hf.env.localModelPath = dirname(FIXTURE) + sep;
    const tokenizer = await hf.AutoTokenizer.from_pretrained(basename(FIXTURE));
    const textModel = await hf.CLIPTextModelWithProjection.from_pretrained(basename(FIXTURE), {
      dtype: 'fp32',
    });
    const visionModel = await hf.CLIPVisionModelWithProjection.from_pretrained(basename(FIXTURE), {
      dtype: 'fp32',
    });
    const processor = await hf.AutoProcessor.from_pretrained(basename(FIXTURE));
    const unit = (v: Float32Array) => {
      const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      return Array.from(v, (x) => x / n);
    };
    const words = await textModel(tokenizer(CONCEPTS, { padding: true }));
    const wordEmb = words.text_embeds.data as Float32Array;
    const image = await visionModel(await processor(await hf.RawImage.read(join(imagesDir, 'a-32px.png'))));
    const imageEmb = unit(image.image_embeds.data as Float32Array);
    const a = files.indexOf('a-32px.png');
    CONCEPTS.forEach((_, j) => {
      const tj = unit(wordEmb.subarray(j * 32, (j + 1) * 32));
      tj.forEach((x, c) => expect(t.data[j * 32 + c]).toBeCloseTo(x, 5));
      const expected = tj.reduce((s, x, c) => s + x * imageEmb[c], 0);
      expect(p.data[a * p.cols + j]).toBeCloseTo(expected, 4);
    });
    await Promise.all([textModel.dispose(), visionModel.dispose()]);
  });

  it('names a missing model folder', async () => {
    const err = await buildClipBundle({
      imagesDir,
      conceptsFile,
      clipModelDir: join(work, 'no-such-model'),
      out: join(work, 'x'),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CmError);
    expect((err as CmError).code).toBe('NOT_FOUND');
    expect((err as CmError).message).toMatch(/CLIP model folder .*no-such-model does not exist/);
  });

  it('lists every missing file of an incomplete model folder', async () => {
    const partial = join(work, 'partial-clip');
    cpSync(FIXTURE, partial, { recursive: true });
    rmSync(join(partial, 'tokenizer.json'));
    rmSync(join(partial, 'onnx', 'vision_model.onnx'));
    const err = await buildClipBundle({
      imagesDir,
      conceptsFile,
      clipModelDir: partial,
      out: join(work, 'y'),
    }).catch((e: unknown) => e);
    expect((err as CmError).code).toBe('NOT_FOUND');
    expect((err as CmError).message).toContain('incomplete: missing tokenizer.json, onnx/vision_model.onnx');
    expect((err as CmError).context.missing).toEqual(['tokenizer.json', 'onnx/vision_model.onnx']);
    expect(CLIP_MODEL_FILES).toContain('preprocessor_config.json');
  });

  it('rejects an empty image folder and bad concept lists', async () => {
    const empty = join(work, 'empty');
    mkdirSync(empty);
    await expect(
      buildClipBundle({ imagesDir: empty, conceptsFile, clipModelDir: FIXTURE, out: join(work, 'z') }),
    ).rejects.toThrow(/no \.png, \.jpg or \.jpeg/);
    expect(() => parseConceptList('red\nblue\nred\n', 'c.txt')).toThrow(
      "c.txt:3: concept 'red' repeats line 1",
    );
    expect(() => parseConceptList('# nothing\n\n', 'c.txt')).toThrow(/no concepts/);
  });
});
