import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CmError } from '@cm/core';
import { computeSimilarity, dissectLayer, type Matrix } from '@cm/dissect';
import {
  BundleDirectory,
  loadBundle,
  makeSyntheticBundle,
  mulberry32,
  writeBundle,
  writeBundleInto,
  type ProbeBundle,
} from '../src';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'cm-probe-bundle-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function freshBundle(name: string, images = 120, seed = 7): Promise<{ dir: string; id: string }> {
  const dir = join(work, name);
  const id = await writeBundle(dir, makeSyntheticBundle({ images, seed }));
  return { dir, id };
}

function expectCorrupt(dir: string, file: string): void {
  let err: unknown;
  try {
    loadBundle(dir);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CmError);
  expect((err as CmError).code).toBe('CORRUPT');
  expect((err as CmError).message).toContain(file);
  expect((err as CmError).context.file).toBe(join(dir, file));
}

/** A layer of N random neurons (D x N), with neuron 0 planted to fire on 'red' and neuron 1 on 'ring'. */
function randomLayer(bundle: ProbeBundle, neurons: number): Matrix {
  const { probeScores: p, concepts } = bundle.space;
  const rng = mulberry32(99);
  const q = new Float32Array(p.rows * neurons);
  for (let i = 0; i < q.length; i++) q[i] = rng.next();
  const red = concepts.indexOf('red');
  const ring = concepts.indexOf('ring');
  for (let i = 0; i < p.rows; i++) {
    q[i * neurons] = 3 * p.data[i * p.cols + red] + 0.5 * rng.next();
    q[i * neurons + 1] = 3 * p.data[i * p.cols + ring] + 0.5 * rng.next();
  }
  return { rows: p.rows, cols: neurons, data: q };
}

describe('probe bundle format', () => {
  it('round-trips: make -> write -> load gives the same arrays, verified', async () => {
    const data = makeSyntheticBundle({ images: 150, seed: 21, size: 64 });
    const dir = join(work, 'roundtrip');
    const id = await writeBundle(dir, data);
    expect(readdirSync(dir).sort()).toEqual(
      [
        'concept_embeddings.npy',
        'images.npy',
        'manifest.json',
        'probe_scores.npy',
        'projection_components.npy',
        'projection_mean.npy',
      ].sort(),
    );
    const b = loadBundle(dir);
    expect(b.id).toBe(id);
    expect(b.imageShape).toEqual([150, 64, 64, 3]);
    expect(Buffer.compare(Buffer.from(b.images), Buffer.from(data.images))).toBe(0);
    expect(Array.from(b.space.probeScores.data)).toEqual(Array.from(data.space.probeScores.data));
    expect(Array.from(b.space.conceptEmbeddings.data)).toEqual(Array.from(data.space.conceptEmbeddings.data));
    expect(Array.from(b.space.projection.components.data)).toEqual(
      Array.from(data.space.projection.components.data),
    );
    expect(b.space.concepts).toEqual(data.space.concepts);
    expect(b.space.categories).toEqual(data.space.categories);
    expect(b.manifest.source).toEqual({
      kind: 'synthetic',
      world: 'shapes',
      seed: 21,
      images: 150,
      size: 64,
    });
    // writing the same data again gives byte-identical files
    const again = join(work, 'roundtrip-again');
    expect(await writeBundle(again, data)).toBe(id);
    for (const f of readdirSync(dir))
      expect(Buffer.compare(readFileSync(join(dir, f)), readFileSync(join(again, f)))).toBe(0);
  });

  it('round-trips into a dissection of one layer of random activations (@cm/dissect dissectLayer)', async () => {
    const { dir } = await freshBundle('dissect', 400, 3);
    const bundle = loadBundle(dir);
    const q = randomLayer(bundle, 16);
    const layer = await dissectLayer(bundle.space, q);
    expect(layer.labels).toHaveLength(16);
    for (const label of layer.labels) {
      expect(bundle.space.concepts).toContain(label.concept);
      expect(Number.isFinite(label.score) && Number.isFinite(label.x) && Number.isFinite(label.y)).toBe(true);
      expect(label.embedding).toHaveLength(bundle.space.conceptEmbeddings.cols);
    }
    // the planted neurons get their concepts; the category comes from the bundle
    expect(layer.labels[0].concept).toBe('red');
    expect(layer.labels[0].category).toBe('colour');
    expect(layer.labels[1].concept).toBe('ring');
    expect(layer.labels[1].category).toBe('shape');
    expect(Number.isFinite(layer.metrics.labelEntropy)).toBe(true);
    // the cos method on the same bundle agrees on the planted neurons
    const sim = await computeSimilarity('cos', bundle.space.probeScores, q);
    const best = (k: number) => {
      let j = 0;
      for (let c = 1; c < sim.cols; c++) if (sim.data[k * sim.cols + c] > sim.data[k * sim.cols + j]) j = c;
      return bundle.space.concepts[j];
    };
    expect([best(0), best(1)]).toEqual(['red', 'ring']);
  });

  it('softmaxInPlace: P stored where its softmax goes gives the same labels; afterwards cos refuses it', async () => {
    const { dir } = await freshBundle('softmax-in-place', 400, 3);
    const plain = loadBundle(dir);
    const inPlace = loadBundle(dir, { softmaxInPlace: { slots: 2 } });
    expect(Array.from(inPlace.space.probeScores.data)).toEqual(Array.from(plain.space.probeScores.data));
    const q = randomLayer(plain, 16);
    const [a, b] = [await dissectLayer(plain.space, q), await dissectLayer(inPlace.space, q)];
    expect(b.labels.map((l) => [l.concept, l.score])).toEqual(a.labels.map((l) => [l.concept, l.score]));
    expect(b.metrics).toEqual(a.metrics);
    // P now holds softmax(10 P): rows sum to 1, and methods that read P itself refuse it
    const { rows, cols, data } = inPlace.space.probeScores;
    let sum = 0;
    for (let j = 0; j < cols; j++) sum += data[j];
    expect(rows).toBe(400);
    expect(sum).toBeCloseTo(1, 5);
    await expect(computeSimilarity('cos', inPlace.space.probeScores, q)).rejects.toThrow(
      /replaced by softmax\(10 P\) in place/,
    );
  });

  it('fails on a truncated array, naming the file', async () => {
    const { dir } = await freshBundle('truncated');
    truncateSync(join(dir, 'images.npy'), 1000);
    expectCorrupt(dir, 'images.npy');
  });

  it('fails on a changed byte, naming the file', async () => {
    const { dir } = await freshBundle('flipped');
    const file = join(dir, 'probe_scores.npy');
    const bytes = readFileSync(file);
    bytes[bytes.length - 3] ^= 0x40;
    writeFileSync(file, bytes);
    expectCorrupt(dir, 'probe_scores.npy');
  });

  it('hashes every byte while reading into the final buffer: header edits and appended bytes are caught, P is shared', async () => {
    const { dir } = await freshBundle('streamed-hash');
    const loaded = loadBundle(dir);
    // P lands in a SharedArrayBuffer (the dissection workers read it in place, no copy)
    expect(loaded.space.probeScores.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(loaded.space.conceptEmbeddings.data.buffer).toBeInstanceOf(ArrayBuffer);

    const file = join(dir, 'probe_scores.npy');
    const original = readFileSync(file);
    // bytes after the data are not part of the array but are part of the file
    writeFileSync(file, Buffer.concat([original, Buffer.from([1, 2, 3])]));
    expectCorrupt(dir, 'probe_scores.npy');
    expect(() => loadBundle(dir)).toThrow(/does not match its hash/);
    // a header edit that still parses (another shape): reported as a changed file
    const header = original.subarray(0, 128).toString('latin1');
    const [, rows, cols] = /'shape': \((\d+), (\d+)\)/.exec(header) ?? [];
    const edited = Buffer.from(original);
    expect(rows).not.toBe(cols);
    // (cols, rows): same length, so the header still parses
    edited.write(header.replace(`(${rows}, ${cols})`, `(${cols}, ${rows})`), 0, 'latin1');
    writeFileSync(file, edited);
    expect(() => loadBundle(dir)).toThrow(/does not match its hash/);
    // a byte in the first data chunk
    const flipped = Buffer.from(original);
    flipped[200] ^= 0x01;
    writeFileSync(file, flipped);
    expect(() => loadBundle(dir)).toThrow(/does not match its hash/);
    // restored: loads again, same values
    writeFileSync(file, original);
    expect(Array.from(loadBundle(dir).space.probeScores.data)).toEqual(
      Array.from(loaded.space.probeScores.data),
    );
  });

  it('fails on a missing array, an edited manifest and a manifest that is not JSON', async () => {
    const missing = await freshBundle('missing');
    rmSync(join(missing.dir, 'concept_embeddings.npy'));
    expectCorrupt(missing.dir, 'concept_embeddings.npy');

    const edited = await freshBundle('edited');
    const manifestPath = join(edited.dir, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    manifest.concepts[0].name = 'blue circle';
    writeFileSync(manifestPath, JSON.stringify(manifest));
    expectCorrupt(edited.dir, 'manifest.json');

    const broken = await freshBundle('broken');
    writeFileSync(
      join(broken.dir, 'manifest.json'),
      readFileSync(join(broken.dir, 'manifest.json'), 'utf8').slice(0, 200),
    );
    expectCorrupt(broken.dir, 'manifest.json');
  });

  it('fails with NOT_FOUND on a folder that is not a bundle', () => {
    expect(() => loadBundle(join(work, 'nothing-here'))).toThrow(
      expect.objectContaining({ code: 'NOT_FOUND' }),
    );
  });
});

describe('BundleDirectory', () => {
  it('lists bundles stored as <root>/<id>/, loads them by id (cached) and rejects unknown ids', async () => {
    const root = join(work, 'root');
    const a = await writeBundleInto(root, makeSyntheticBundle({ images: 60, seed: 1 }));
    const b = await writeBundleInto(root, makeSyntheticBundle({ images: 60, seed: 2 }));
    expect(existsSync(join(root, a.id, 'manifest.json'))).toBe(true);
    const bundles = new BundleDirectory(root);
    expect(bundles.list()).toEqual([a.id, b.id].sort());
    const loaded = bundles.get(a.id);
    expect(loaded.id).toBe(a.id);
    expect(loaded.space.probeScores.rows).toBe(60);
    expect(bundles.get(a.id)).toBe(loaded);
    expect(() => bundles.get('0123456789abcdef')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(() => bundles.get('../etc')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(new BundleDirectory(join(work, 'no-root')).list()).toEqual([]);
  });
});
