/**
 * Bring-your-own data with `cm probe` (subprocess): `build --root` and `--skip-bad` with an
 * unreadable image among good ones, the progress line ended before an error, an ambiguous concept
 * file refused, and `make --splits-out` writing the labelled splits as .npy.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readNpy } from '@cm/core';
import { loadBundle, renderProbeWorld } from '@cm/probe';
import { cmWith } from './run-cm';

const CLIP = join(__dirname, '..', '..', '..', 'libs', 'probe', 'test', 'fixtures', 'tiny-clip');
const work = mkdtempSync(join(tmpdir(), 'cm-probe-byo-'));
const cm = cmWith({ CM_HOME: join(work, 'home'), CM_LOG_LEVEL: 'warn' }, 120_000);
const images = join(work, 'images');
const concepts = join(work, 'concepts.txt');

beforeAll(async () => {
  mkdirSync(images);
  const world = renderProbeWorld({ images: 4, seed: 3, size: 64 });
  for (let i = 0; i < 4; i++)
    await sharp(Buffer.from(world.images.subarray(i * 64 * 64 * 3, (i + 1) * 64 * 64 * 3)), {
      raw: { width: 64, height: 64, channels: 3 },
    })
      .png()
      .toFile(join(images, `img-${i}.png`));
  // An .ico file named .png: the case that used to stop the whole build.
  const ico = Buffer.alloc(70);
  ico.writeUInt16LE(0, 0);
  ico.writeUInt16LE(1, 2);
  ico.writeUInt16LE(1, 4);
  writeFileSync(join(images, 'favicon.png'), ico);
  writeFileSync(concepts, 'red\tcolour\ncircle\tshape\nsan francisco, california\t\nsquare\n');
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const base = () => [
  'probe',
  'build',
  '--images',
  images,
  '--concepts',
  concepts,
  '--clip-model',
  CLIP,
  '--size',
  '32',
];

describe('cm probe build', () => {
  it('fails on an unreadable image by default, with the error on a line of its own', async () => {
    const r = await cm([...base(), '--root', join(work, 'root-a')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^cm: error: cannot decode image .*favicon\.png/m);
    expect(r.stderr).toMatch(/--skip-bad/);
    expect(r.stderr).not.toMatch(/images cm: error/);
  });

  it('--skip-bad leaves it out and lists it; --root writes <root>/<id>', async () => {
    const root = join(work, 'root-b');
    const r = await cm([...base(), '--root', root, '--skip-bad']);
    expect(r.stderr).toMatch(/skipped 1 unreadable image\(s\):\n {2}favicon\.png: /);
    expect(r.code).toBe(0);
    const [id, dir] = r.stdout.trim().split('\t');
    expect(dir).toBe(join(root, id));
    const bundle = loadBundle(dir);
    expect(bundle.imageShape).toEqual([4, 32, 32, 3]);
    expect(bundle.manifest.source).toMatchObject({
      imageFiles: ['img-0.png', 'img-1.png', 'img-2.png', 'img-3.png'],
    });
    expect(bundle.space.concepts).toEqual(['red', 'circle', 'san francisco, california', 'square']);
    expect(bundle.space.categories).toEqual(['colour', 'shape', 'concept', 'concept']);
  });

  it('refuses a comma without a tab (name or category?) naming the line', async () => {
    const ambiguous = join(work, 'ambiguous.txt');
    writeFileSync(ambiguous, 'red\tcolour\nsan francisco, california\n');
    const r = await cm([
      'probe',
      'build',
      '--images',
      images,
      '--concepts',
      ambiguous,
      '--clip-model',
      CLIP,
      '--out',
      join(work, 'x'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ambiguous\.txt:2: 'san francisco, california' has a comma but no tab/);
  });

  it('needs exactly one of --out and --root', async () => {
    const r = await cm([...base(), '--skip-bad']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/exactly one of --out DIR or --root DIR/);
  });
});

describe('cm probe make --splits-out', () => {
  it('writes train/test images (uint8 NHWC), labels (int64) and classes.json', async () => {
    const out = join(work, 'splits');
    const r = await cm(['probe', 'make', '--splits-out', out, '--count', '200', '--test-fraction', '0.25']);
    expect(r.code).toBe(0);
    const classes = JSON.parse(readFileSync(join(out, 'classes.json'), 'utf8')) as string[];
    expect(classes.length).toBeGreaterThan(1);
    const trainImages = readNpy(join(out, 'train_images.npy'));
    const trainLabels = readNpy(join(out, 'train_labels.npy'));
    const testImages = readNpy(join(out, 'test_images.npy'));
    const testLabels = readNpy(join(out, 'test_labels.npy'));
    expect(trainImages).toMatchObject({ dtype: 'uint8', shape: [150, 32, 32, 3] });
    expect(testImages).toMatchObject({ dtype: 'uint8', shape: [50, 32, 32, 3] });
    expect(trainLabels).toMatchObject({ dtype: 'int64', shape: [150] });
    expect(testLabels).toMatchObject({ dtype: 'int64', shape: [50] });
    const labels = [...(trainLabels.data as BigInt64Array)].map(Number);
    expect(labels.every((l) => l >= 0 && l < classes.length)).toBe(true);
    expect(new Set(labels).size).toBe(classes.length);
  });
});
