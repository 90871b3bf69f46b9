import type { LayerActivations } from '@cm/contracts';

/**
 * What is wrong with `images` as the `count` top activating probe images of neuron `neuron` of a
 * pooled layer [D, N] (empty when nothing): checked by a plain scan of all the neuron's activations,
 * independent of the engine's partial selection. Ties may be broken either way, so the
 * check is on values: the images are distinct, in range, best first, and none left out is higher.
 */
export function topImageProblems(
  layer: Pick<LayerActivations, 'shape' | 'data'>,
  neuron: number,
  images: readonly number[],
  count = 8,
): string[] {
  const [d, n] = layer.shape;
  const value = (i: number): number => layer.data[i * n + neuron];
  const problems: string[] = [];
  const expectedLength = Math.min(count, d);
  if (images.length !== expectedLength)
    problems.push(`neuron ${neuron}: ${images.length} images, expected ${expectedLength}`);
  if (new Set(images).size !== images.length) problems.push(`neuron ${neuron}: repeated images ${images}`);
  if (images.some((i) => !Number.isInteger(i) || i < 0 || i >= d))
    problems.push(`neuron ${neuron}: image index out of 0..${d - 1} in ${images}`);
  if (problems.length > 0) return problems;
  for (let r = 1; r < images.length; r++)
    if (value(images[r]) > value(images[r - 1]))
      problems.push(`neuron ${neuron}: image ${images[r]} ranks below a lower one`);
  const kept = new Set(images);
  const lowestKept = Math.min(...images.map(value));
  let highestLeftOut = -Infinity;
  for (let i = 0; i < d; i++) if (!kept.has(i)) highestLeftOut = Math.max(highestLeftOut, value(i));
  if (highestLeftOut > lowestKept)
    problems.push(
      `neuron ${neuron}: an image left out activates ${highestLeftOut} > ${lowestKept}, the lowest kept`,
    );
  return problems;
}
