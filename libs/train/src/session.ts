import {
  BundleDirectory,
  loadBundle,
  makeSyntheticBundle,
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

/** A bundle by folder, or by id inside a bundle directory. */
export function openProbeBundle(pathOrId: string, root: string): ProbeBundle {
  if (/^[0-9a-f]{16}$/.test(pathOrId)) return new BundleDirectory(root).get(pathOrId) as ProbeBundle;
  return loadBundle(pathOrId);
}

export function probeImagesOf(bundle: ProbeBundle): ProbeImages {
  return { bundleId: bundle.id, images: bundle.images, imageShape: bundle.imageShape };
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
