import * as tf from '@tensorflow/tfjs';
import { invalidArgument } from '@cm/core';
import { dissectLayer, type ConceptSpace } from '@cm/dissect';
import type { MonitoredLayer } from '@cm/contracts';
import { buildModel, selectLayers, type ModelSpec } from './models';
import { Prober, untrainedNullActivations } from './probing';

/** One layer's interpretable share against the untrained-network null, with its categories. */
export interface UntrainedNullShare {
  interpretable: number;
  /** Interpretable neurons per concept category. */
  categories: Record<string, number>;
}

/**
 * Interpretable share per monitored layer at initialisation and after training, tested against the
 * untrained-network null (docs/dissect.md): the same layer of `copies` freshly initialised models of
 * the spec. The run's own initialisation is rebuilt from its seed (models are seeded, so this is the
 * step-0 network of a standard or adversarial run; not of fine-tuning or lottery rounds, which start
 * from other weights).
 */
export async function untrainedNullShares(
  probe: { images: Uint8Array; imageShape: [number, number, number, number]; space: ConceptSpace },
  spec: ModelSpec,
  classes: number,
  seed: number,
  trained: tf.LayersModel,
  layers: MonitoredLayer[] = selectLayers(trained),
  copies = 8,
): Promise<Record<string, { first: UntrainedNullShare; last: UntrainedNullShare }>> {
  const [, h, w] = probe.imageShape;
  const build = (s: number) => buildModel(spec, [h, w, 3], classes, s).model;
  const nulls = untrainedNullActivations(build, layers, probe.images, probe.imageShape, copies);
  const initial = build(seed);
  const out: Record<string, { first: UntrainedNullShare; last: UntrainedNullShare }> = {};
  try {
    for (const [when, model] of [
      ['first', initial],
      ['last', trained],
    ] as const) {
      for (const a of new Prober(model, layers, probe.images, probe.imageShape).activations()) {
        const { labels } = await dissectLayer(
          probe.space,
          { rows: a.shape[0], cols: a.shape[1], data: a.data },
          { nullActivations: nulls.get(a.layer) },
        );
        const categories: Record<string, number> = {};
        let interpretable = 0;
        for (const l of labels) {
          if (!l.interpretable) continue;
          interpretable++;
          categories[l.category] = (categories[l.category] ?? 0) + 1;
        }
        const share = { interpretable: interpretable / labels.length, categories };
        out[a.layer] ??= { first: share, last: share };
        out[a.layer][when] = share;
      }
    }
  } finally {
    initial.dispose();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The findings benchmark's statistics (tools/bench/findings.ts, docs/findings.md). Written here by
// hand, small and pure: a mean and a Student-t 95 % interval over seeds, and one verdict rule.

/**
 * Two-sided 95 % quantiles of Student's t, t_{0.975, df}, df = 1..30 (standard tables); above 30
 * the normal 1.96 is within 4 % of the t quantile.
 */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

export function tQuantile975(df: number): number {
  if (!Number.isInteger(df) || df < 1) throw invalidArgument(`degrees of freedom must be >= 1, got ${df}`);
  return df <= T975.length ? T975[df - 1] : 1.96;
}

/** Mean and 95 % t-interval of values over seeds (n >= 2; one value gives an interval of NaN). */
export interface Interval {
  mean: number;
  lo: number;
  hi: number;
  n: number;
  values: number[];
}

export function tInterval(values: readonly number[]): Interval {
  const v = values.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, lo: NaN, hi: NaN, n, values: [...values] };
  const mean = v.reduce((a, x) => a + x, 0) / n;
  if (n < 2) return { mean, lo: NaN, hi: NaN, n, values: [...values] };
  const sd = Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  const half = (tQuantile975(n - 1) * sd) / Math.sqrt(n);
  return { mean, lo: mean - half, hi: mean + half, n, values: [...values] };
}

export type Verdict = 'reproduced' | 'not reproduced' | 'mixed';

/**
 * The verdict of a finding from per-layer intervals of the difference (claimed direction positive:
 * pass the difference so that the paper's claim means > 0):
 * - reproduced: the interval lies above 0 in more than half of the layers and below 0 in none;
 * - not reproduced: it lies above 0 in no layer (below 0 somewhere, or nowhere clear of 0);
 * - mixed: otherwise (above 0 in some layers, but not most, or also below 0 in some).
 */
export function verdictOf(differences: readonly Interval[]): Verdict {
  const up = differences.filter((d) => d.lo > 0).length;
  const down = differences.filter((d) => d.hi < 0).length;
  if (up > differences.length / 2 && down === 0) return 'reproduced';
  if (up === 0) return 'not reproduced';
  return 'mixed';
}

const signed = (x: number, digits: number) => (x >= 0 ? '+' : '') + x.toFixed(digits);

/** `+0.123 [+0.010, +0.236]`: a mean and its interval. */
export function formatInterval(i: Interval, digits = 3): string {
  return Number.isFinite(i.lo)
    ? `${signed(i.mean, digits)} [${signed(i.lo, digits)}, ${signed(i.hi, digits)}]`
    : `${signed(i.mean, digits)} [n=${i.n}]`;
}

/** The benchmark's last lines: `finding <name>: <verdict>: <numbers with intervals>`. */
export function findingLine(
  name: string,
  verdict: Verdict,
  perLayer: readonly { layer: string; difference: Interval }[],
  what: string,
): string {
  const numbers = perLayer.map((p) => `${p.layer} ${formatInterval(p.difference)}`).join(', ');
  return `finding ${name}: ${verdict}: ${numbers} (${what})`;
}

/**
 * A random mask of the same sparsity as `masks`, kernel by kernel: the same number of zeros in
 * each kernel, at positions drawn with a seeded Fisher-Yates shuffle. The control of the lottery
 * finding: is it the ticket's mask that makes neurons interpretable, or sparsity as such?
 */
export function randomMasksLike(masks: Map<string, tf.Tensor>, seed: number): Map<string, tf.Tensor> {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x100000000;
  };
  const out = new Map<string, tf.Tensor>();
  for (const [name, mask] of masks) {
    const m = Float32Array.from(mask.dataSync());
    let zeros = 0;
    for (const v of m) if (v === 0) zeros++;
    const order = Array.from({ length: m.length }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const r = new Float32Array(m.length).fill(1);
    for (let i = 0; i < zeros; i++) r[order[i]] = 0;
    out.set(name, tf.tensor(r, mask.shape));
  }
  return out;
}
