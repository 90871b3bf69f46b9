import { cpSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  BundleDirectory,
  loadBundle,
  makeSyntheticBundle,
  MANIFEST_FILE,
  writeBundleInto,
  type ProbeBundle,
} from '@cm/probe';
import type { ProbeImages } from './loop';

/**
 * The built-in world's probe bundle in a bundle directory (`<root>/<id>/`, what the concept
 * service and the all-in-one engine read). Bundles are content-addressed, so the same options give
 * the same id and a second call reuses the folder.
 */
export async function ensureSyntheticBundle(
  root: string,
  opts: { images: number; seed: number; size?: 32 | 64 },
): Promise<ProbeBundle> {
  const { dir } = await writeBundleInto(
    root,
    makeSyntheticBundle({ images: opts.images, seed: opts.seed, size: opts.size ?? 32 }),
  );
  return loadBundle(dir);
}

/**
 * A bundle by folder, or by id inside a bundle directory. A folder outside the directory is
 * verified and copied into it (`<root>/<id>/`, content-addressed, once): the all-in-one engine and a
 * concept service on this machine look bundles up there by id, and without the copy the run would
 * be refused at start (NOT_FOUND) after the bundle had loaded fine here.
 */
export function openProbeBundle(pathOrId: string, root: string): ProbeBundle {
  const isFolder = existsSync(pathOrId) && statSync(pathOrId).isDirectory();
  if (!isFolder && /^[0-9a-f]{16}$/.test(pathOrId))
    return new BundleDirectory(root).get(pathOrId) as ProbeBundle;
  const bundle = loadBundle(pathOrId);
  const inRoot = join(resolve(root), bundle.id);
  if (resolve(bundle.dir) === inRoot) return bundle;
  if (!existsSync(join(inRoot, MANIFEST_FILE))) {
    mkdirSync(root, { recursive: true });
    const tmp = join(root, `.tmp-${bundle.id}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    cpSync(bundle.dir, tmp, { recursive: true });
    rmSync(inRoot, { recursive: true, force: true });
    renameSync(tmp, inRoot);
  }
  return new BundleDirectory(root).get(bundle.id) as ProbeBundle;
}

export function probeImagesOf(bundle: ProbeBundle): ProbeImages {
  return {
    bundleId: bundle.id,
    images: bundle.images,
    imageShape: bundle.imageShape,
    probeScores: bundle.space.probeScores,
  };
}

/**
 * The CLIP-Dissect evaluation on the output layer: the share of classes whose logit neuron got
 * its own class name as label (class i is neuron i). Composite classes ('circle+red') count when the
 * label is any of their parts.
 */
export function ownClassAccuracy(
  labels: { neuron: number; concept: string }[],
  classNames: string[],
): { accuracy: number; wrong: { neuron: number; className: string; label: string }[] } {
  const byNeuron = new Map(labels.map((l) => [l.neuron, l.concept]));
  const wrong: { neuron: number; className: string; label: string }[] = [];
  classNames.forEach((cls, i) => {
    const label = byNeuron.get(i) ?? '';
    if (!cls.split('+').includes(label)) wrong.push({ neuron: i, className: cls, label });
  });
  return { accuracy: classNames.length ? 1 - wrong.length / classNames.length : 0, wrong };
}
