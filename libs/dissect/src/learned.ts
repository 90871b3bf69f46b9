/**
 * The learned-concept figure (issue 18; docs/dissect.md, "Learned concepts"): the share of a
 * layer's neurons that are interpretable *beyond* the same layer of the same architecture at
 * random initialisation, on the same probe bundle.
 *
 * Why a second figure: the association test (calibrate.ts) asks whether a neuron's top images are
 * related to a concept at all, against neurons whose activations are shuffled across images. Random
 * filters pass it: an untrained conv channel is a fixed linear filter of the pixels and already
 * sorts images by colour or brightness, so conv1 reads 94 - 100 % "interpretable" at step 0, and so
 * does a randomly initialised CLIP model's features. Users read "interpretable" as "has learned a
 * concept"; this figure is the one that means that.
 *
 * Definitions (pure, no threads):
 * - A neuron's *evidence* for concept j, e[k, j], is the part of its similarity that does not depend
 *   on the other neurons of its layer: for wpmi / soft_wpmi its own log-likelihood
 *   L[k, j] = sim[k, j] + lambda logp[j] (the quantity the association test is run on); for cos,
 *   cos_cubed and rank_reorder the similarity itself (already per neuron). It compares across layers,
 *   checkpoints and networks on one probe bundle and method. Dead neurons have none (-Infinity).
 * - The *ceiling* of concept j for a layer is the largest evidence for j that any live neuron of that
 *   layer reaches in any of K random initialisations (max over K x N untrained neurons, per concept).
 *   Per concept, not pooled over concepts: untrained filters reach a colour concept easily and a
 *   shape concept never, so one pooled bar would either let every colour neuron through or hide
 *   every learned shape detector.
 * - A neuron is *beyond random init* when it is interpretable (the association test) and its
 *   evidence for its own concept j* (its label) is above the ceiling of j* by more than float32
 *   rounding (EVIDENCE_TOLERANCE): a neuron that copies an untrained one ties the ceiling at most and
 *   does not count. The max (not a
 *   quantile) makes "copies one of the baseline's networks" score exactly 0 with no correction.
 * - *Chance*: a fresh untrained network (not one of the K) still passes sometimes, because each of
 *   its neurons is compared on the concept it scores best on (selection over S concepts). That rate
 *   is estimated from the baseline itself, leave-one-out: the share of init k's neurons beyond the
 *   ceiling of the other K - 1 inits, averaged over k (K - 1 inits give a lower ceiling than K, so
 *   this over-estimates the fresh-network rate slightly: the correction is conservative). 0 when
 *   K = 1 (not estimable; say so where K = 1 is allowed).
 * - learnedFraction = max(0, (raw - chance) / (1 - chance)), raw = beyond-random-init neurons / N:
 *   0 for an untrained network (exactly 0 for a copy of a baseline one, since raw = 0), and 1 when
 *   every neuron is beyond every untrained neuron (a layer of ground-truth concept detectors).
 */
import { CmError } from '@cm/core';
import type { LayerDissection } from './types';

/**
 * Relative margin a neuron's evidence must clear above a ceiling: the kernel's own float32 rounding
 * (as calibrate.ts's MARGIN_FLOOR). A neuron carried over verbatim from an untrained network into a
 * layer whose other neurons differ gets its likelihood back through a different layer normaliser
 * (L = sim + lambda logp), equal to the ceiling only up to rounding; it must not count as learned.
 */
export const EVIDENCE_TOLERANCE = 1e-5;

/** What the learned figure needs of one dissected layer, per neuron. */
export interface NeuronEvidence {
  /** Label (top-1 concept index) per neuron. */
  conceptIndex: ArrayLike<number>;
  /** Evidence for the label's concept per neuron (-Infinity for a dead neuron). */
  evidence: ArrayLike<number>;
  /** The association test's verdict per neuron. */
  interpretable: ArrayLike<boolean>;
}

/** One random initialisation of a layer, as the baseline keeps it. */
export interface RandomInitLayer extends NeuronEvidence {
  /** Per concept (S): max over the live neurons of this init of their evidence for the concept. */
  conceptCeiling: ArrayLike<number>;
}

export interface LearnedConceptShare {
  /** Chance-corrected share of the layer's neurons beyond random init, in [0, 1]. */
  learnedFraction: number;
  /** Uncorrected share: interpretable and evidence > ceiling of its concept. */
  rawFraction: number;
  /** Leave-one-out pass rate of the baseline's own inits (0 when K = 1). */
  chanceFraction: number;
  /** Per neuron: beyond random init. */
  learned: boolean[];
  /** Random initialisations the ceilings came from (K). */
  inits: number;
}

function check(what: string, cond: boolean, context: Record<string, unknown>): void {
  if (!cond)
    throw new CmError('INVALID_ARGUMENT', `learned-concept figure: ${what}`, {
      context,
      hint: 'the baseline must be the same layer (same width) dissected on the same probe bundle and method',
    });
}

function checkNeurons(n: NeuronEvidence, name: string): number {
  const N = n.conceptIndex.length;
  check(
    `${name} has ${N} labels, ${n.evidence.length} evidence values and ${n.interpretable.length} verdicts`,
    n.evidence.length === N && n.interpretable.length === N,
    { name, labels: N, evidence: n.evidence.length, interpretable: n.interpretable.length },
  );
  return N;
}

/** Per concept, the max of the given ceilings (the ceiling over those inits together). */
export function combinedCeiling(inits: readonly Pick<RandomInitLayer, 'conceptCeiling'>[]): Float64Array {
  const S = inits[0]?.conceptCeiling.length ?? 0;
  const out = new Float64Array(S).fill(-Infinity);
  for (const init of inits) {
    check(`ceilings of ${init.conceptCeiling.length} and ${S} concepts`, init.conceptCeiling.length === S, {
      concepts: init.conceptCeiling.length,
      expected: S,
    });
    for (let j = 0; j < S; j++) if (init.conceptCeiling[j] > out[j]) out[j] = init.conceptCeiling[j];
  }
  return out;
}

/** Per neuron: interpretable and evidence strictly above the ceiling of its own concept. */
export function beyondCeiling(layer: NeuronEvidence, ceiling: ArrayLike<number>): boolean[] {
  const N = checkNeurons(layer, 'the layer');
  const out = new Array<boolean>(N);
  for (let k = 0; k < N; k++) {
    const j = layer.conceptIndex[k];
    check(
      `neuron ${k} has concept index ${j}, outside 0..${ceiling.length - 1}`,
      j >= 0 && j < ceiling.length,
      {
        neuron: k,
        conceptIndex: j,
        concepts: ceiling.length,
      },
    );
    const bar = ceiling[j] + EVIDENCE_TOLERANCE * Math.max(1, Math.abs(ceiling[j]));
    out[k] = Boolean(layer.interpretable[k]) && layer.evidence[k] > (Number.isFinite(bar) ? bar : ceiling[j]);
  }
  return out;
}

const share = (flags: readonly boolean[]): number =>
  flags.length === 0 ? 0 : flags.reduce((a, f) => a + (f ? 1 : 0), 0) / flags.length;

/** Leave-one-out pass rate of the inits against each other (0 for fewer than 2). */
export function chanceFraction(inits: readonly RandomInitLayer[]): number {
  if (inits.length < 2) return 0;
  let total = 0;
  inits.forEach((init, k) => {
    const others = combinedCeiling(inits.filter((_, i) => i !== k));
    total += share(beyondCeiling(init, others));
  });
  return total / inits.length;
}

/**
 * The learned-concept figure of one layer (see the file comment): `layer` is the layer's dissection
 * at a checkpoint, `randomInits` the same layer of K >= 1 randomly initialised networks of the same
 * architecture, dissected on the same probe bundle with the same method.
 */
export function learnedConceptShare(
  layer: NeuronEvidence,
  randomInits: readonly RandomInitLayer[],
): LearnedConceptShare {
  check('needs at least one random initialisation', randomInits.length >= 1, { inits: randomInits.length });
  const N = checkNeurons(layer, 'the layer');
  randomInits.forEach((init, k) => {
    const width = checkNeurons(init, `random init ${k}`);
    check(`random init ${k} has ${width} neurons, the layer ${N}`, width === N, {
      init: k,
      width,
      neurons: N,
    });
  });
  const learned = beyondCeiling(layer, combinedCeiling(randomInits));
  const rawFraction = share(learned);
  const chance = chanceFraction(randomInits);
  const learnedFraction = chance < 1 ? Math.max(0, (rawFraction - chance) / (1 - chance)) : 0;
  return { learnedFraction, rawFraction, chanceFraction: chance, learned, inits: randomInits.length };
}

/**
 * A layer's evidence from its similarity (N x S): per neuron the evidence for `top1[k]`, and per
 * concept the max over live neurons (the layer's contribution to a ceiling). `likelihood` (wpmi /
 * soft_wpmi): e = sim + lambda logp; without it e = sim.
 */
export function layerEvidence(
  sim: { rows: number; cols: number; data: Float32Array },
  top1: ArrayLike<number>,
  dead: readonly boolean[],
  likelihood?: { logp: ArrayLike<number>; lambda: number },
  withCeiling = false,
): { evidence: Float32Array; conceptCeiling?: Float32Array } {
  const N = sim.rows;
  const S = sim.cols;
  const offset = (j: number): number => (likelihood ? likelihood.lambda * likelihood.logp[j] : 0);
  const evidence = new Float32Array(N);
  for (let k = 0; k < N; k++) evidence[k] = dead[k] ? -Infinity : sim.data[k * S + top1[k]] + offset(top1[k]);
  if (!withCeiling) return { evidence };
  const ceiling = new Float32Array(S).fill(-Infinity);
  for (let k = 0; k < N; k++) {
    if (dead[k]) continue;
    const row = k * S;
    for (let j = 0; j < S; j++) {
      const v = sim.data[row + j];
      if (v > ceiling[j]) ceiling[j] = v;
    }
  }
  // the offset is the same for every neuron of the layer: add it once per concept
  if (likelihood) for (let j = 0; j < S; j++) ceiling[j] += offset(j);
  return { evidence, conceptCeiling: ceiling };
}

/** A dissection's per-neuron evidence (its labels' concepts and verdicts). */
export function neuronEvidence(d: LayerDissection): NeuronEvidence {
  if (!d.evidence)
    throw new CmError('INTERNAL', 'the dissection carries no evidence (dissectLayer / dissectOn set it)');
  return {
    conceptIndex: Int32Array.from(d.labels, (l) => l.conceptIndex),
    evidence: d.evidence.neuron,
    interpretable: d.labels.map((l) => l.interpretable),
  };
}

/** A dissection of a randomly initialised layer as the baseline keeps it (dissected with conceptCeiling). */
export function randomInitLayer(d: LayerDissection): RandomInitLayer {
  if (!d.evidence?.conceptCeiling)
    throw new CmError('INTERNAL', 'a random-init baseline layer must be dissected with conceptCeiling: true');
  return { ...neuronEvidence(d), conceptCeiling: d.evidence.conceptCeiling };
}
