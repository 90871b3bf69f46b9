/**
 * The records of one long, synthetic but realistic training run, generated checkpoint by
 * checkpoint (memory stays bounded by one checkpoint whatever the run's length) and deterministic
 * for a seed. Used by `npm run bench:long-run`.
 *
 * What makes it realistic enough for a store benchmark:
 * - a concept set of a few hundred concepts in eight categories, with fixed 2D map positions
 *   clustered by category; concept names of ordinary lengths;
 * - each neuron holds a concept that drifts: it switches often early in training and rarely late,
 *   mostly to a concept of the same category, and deeper layers drift from colours/textures
 *   towards objects/scenes as training goes on;
 * - scores that rise with training (so the interpretable share grows), five top concepts with
 *   descending scores, eight top images, a few dead neurons (more in deeper layers);
 * - layer metrics computed from those labels by the project's own functions (libs/dissect
 *   layerMetrics/topLayerConcepts), records built by the engine's own builders
 *   (libs/engine/src/records.ts), alerts decided by the real collapse detector (libs/alerts) fed
 *   the snapshots: two engineered collapse episodes (most neurons of one layer converge on one
 *   concept for a while, then recover) make a few real firing/resolved episodes.
 */
import { CollapseDetector, rulesFromConfig } from '@cm/alerts';
import { loadConfig } from '@cm/config';
import type { AlertRecord, CmRecord, RunRecord } from '@cm/contracts';
import { mulberry32 } from '@cm/core';
import { layerMetrics, topLayerConcepts, type LayerDissection, type NeuronLabel } from '@cm/dissect';
import { checkpointRecord, labelRow, labelsRecords, snapshotRecord } from '../../libs/engine/src/records';

export interface LongRunSpec {
  runId: string;
  checkpoints: number;
  layers: number;
  neurons: number;
  /** Size of the concept set (S). */
  concepts: number;
  /** Steps between checkpoints (step = i * stepEvery). */
  stepEvery: number;
  /** Wall-clock seconds between checkpoints (record times: the run ends `now`). */
  secondsPerCheckpoint: number;
  seed: number;
  /** Unix ms of the first checkpoint. */
  startMs: number;
}

export const CATEGORIES = ['color', 'texture', 'material', 'pattern', 'part', 'object', 'animal', 'scene'];
const WORDS: Record<string, string[]> = {
  color: ['red', 'orange', 'yellow', 'green', 'blue', 'purple', 'pink', 'brown', 'grey', 'black', 'white'],
  texture: ['striped', 'dotted', 'woven', 'scaly', 'furry', 'bumpy', 'cracked', 'wrinkled', 'smooth'],
  material: ['wood', 'metal', 'glass', 'fabric', 'stone', 'plastic', 'paper', 'leather', 'water'],
  pattern: ['grid', 'zigzag', 'spiral', 'checkered', 'paisley', 'honeycomb', 'marbled', 'lined'],
  part: ['wheel', 'wing', 'eye', 'leg', 'handle', 'window', 'door', 'leaf', 'beak', 'screen'],
  object: ['car', 'chair', 'bottle', 'lamp', 'bicycle', 'clock', 'guitar', 'boat', 'cup', 'book'],
  animal: ['dog', 'cat', 'bird', 'horse', 'fish', 'frog', 'snake', 'butterfly', 'spider', 'cow'],
  scene: ['beach', 'forest', 'kitchen', 'street', 'mountain', 'office', 'desert', 'river', 'stadium'],
};
const QUALIFIERS = ['', 'dark ', 'light ', 'small ', 'large ', 'close-up ', 'distant ', 'wet ', 'old '];

export interface ConceptSet {
  names: string[];
  categories: string[];
  categoryIndex: Int32Array;
  /** Concept indices per category. */
  byCategory: number[][];
  x: Float32Array;
  y: Float32Array;
}

export function conceptSet(size: number, seed: number): ConceptSet {
  const rnd = mulberry32(seed);
  const names: string[] = [];
  const categories: string[] = [];
  const categoryIndex = new Int32Array(size);
  const byCategory: number[][] = CATEGORIES.map(() => []);
  const x = new Float32Array(size);
  const y = new Float32Array(size);
  const seen = new Set<string>();
  for (let i = 0; i < size; i++) {
    const c = i % CATEGORIES.length;
    const cat = CATEGORIES[c];
    const words = WORDS[cat];
    const round = Math.floor(i / CATEGORIES.length);
    let name = `${QUALIFIERS[Math.floor(round / words.length) % QUALIFIERS.length]}${words[round % words.length]}`;
    if (seen.has(name)) name = `${name} ${round}`;
    seen.add(name);
    names.push(name);
    categories.push(cat);
    categoryIndex[i] = c;
    byCategory[c].push(i);
    // category clusters on a circle; concepts scattered around their cluster's centre
    const angle = (2 * Math.PI * c) / CATEGORIES.length;
    x[i] = 0.6 * Math.cos(angle) + 0.18 * (rnd() - 0.5) * 2;
    y[i] = 0.6 * Math.sin(angle) + 0.18 * (rnd() - 0.5) * 2;
  }
  return { names, categories, categoryIndex, byCategory, x, y };
}

/** The layers' names, shallow to deep. */
export const layerNames = (count: number): string[] =>
  Array.from({ length: count }, (_, i) => (i < count - 1 ? `conv${i + 1}` : 'fc'));

/** An engineered collapse: from `fromIndex` for `length` checkpoints, `share` of the layer's neurons hold `concept`. */
interface Collapse {
  layer: number;
  fromIndex: number;
  length: number;
  concept: number;
  share: number;
}

interface LayerState {
  name: string;
  concept: Int32Array;
  /** Concept before the collapse took it over (restored on recovery). */
  saved: Int32Array;
  skill: Float32Array;
  dead: Uint8Array;
  jitterX: Float32Array;
  jitterY: Float32Array;
  previousTop1?: Int32Array;
}

export interface GeneratedCheckpoint {
  step: number;
  records: CmRecord[];
  labelRows: number;
  alerts: AlertRecord[];
}

export class LongRunGenerator {
  readonly concepts: ConceptSet;
  readonly layerNames: string[];
  private readonly rnd: () => number;
  private readonly layers: LayerState[];
  private readonly collapses: Collapse[];
  private readonly detector = new CollapseDetector(rulesFromConfig(loadConfig({}).alerts));
  /** A tiny embedding per concept (its map position lifted to 3D): enough for embeddingSpread. */
  private readonly embeddings: Float32Array[];
  private readonly threshold = 0.3;

  constructor(readonly spec: LongRunSpec) {
    this.rnd = mulberry32(spec.seed);
    this.concepts = conceptSet(spec.concepts, spec.seed + 1);
    this.layerNames = layerNames(spec.layers);
    this.embeddings = Array.from({ length: spec.concepts }, (_, i) =>
      Float32Array.from([this.concepts.x[i], this.concepts.y[i], 0.5]),
    );
    this.layers = this.layerNames.map((name, l) => {
      const n = spec.neurons;
      const state: LayerState = {
        name,
        concept: new Int32Array(n),
        saved: new Int32Array(n),
        skill: new Float32Array(n),
        dead: new Uint8Array(n),
        jitterX: new Float32Array(n),
        jitterY: new Float32Array(n),
      };
      const deadShare = 0.01 + 0.015 * l;
      for (let k = 0; k < n; k++) {
        state.concept[k] = this.pickConcept(l, 0);
        state.skill[k] = 0.4 + 0.6 * this.rnd();
        state.dead[k] = this.rnd() < deadShare ? 1 : 0;
        state.jitterX[k] = (this.rnd() - 0.5) * 0.08;
        state.jitterY[k] = (this.rnd() - 0.5) * 0.08;
      }
      return state;
    });
    const c = spec.checkpoints;
    const len = Math.max(3, Math.round(c * 0.02));
    this.collapses = [
      {
        layer: Math.min(1, spec.layers - 1),
        fromIndex: Math.round(c * 0.35),
        length: len,
        concept: 3,
        share: 0.9,
      },
      { layer: spec.layers - 1, fromIndex: Math.round(c * 0.7), length: len, concept: 5, share: 0.85 },
    ].filter((e) => e.fromIndex + e.length < c);
  }

  get totalLabelRows(): number {
    return this.spec.checkpoints * this.spec.layers * this.spec.neurons;
  }

  stepAt(index: number): number {
    return index * this.spec.stepEvery;
  }

  timeAt(index: number): string {
    return new Date(this.spec.startMs + index * this.spec.secondsPerCheckpoint * 1000).toISOString();
  }

  runRecord(status: 'running' | 'completed'): RunRecord {
    const s = this.spec;
    const last = s.checkpoints - 1;
    return {
      kind: 'run',
      runId: s.runId,
      model: 'resnet-long',
      paradigm: 'supervised',
      bundleId: 'bench-long-run',
      layers: this.layerNames.map((name) => ({ name, width: s.neurons })),
      tags: { bench: 'long-run', checkpoints: String(s.checkpoints) },
      status,
      startedAt: this.timeAt(0),
      ...(status === 'completed' ? { endedAt: this.timeAt(last) } : {}),
      time: status === 'completed' ? this.timeAt(last) : this.timeAt(0),
    };
  }

  /** Category preference of layer `l` at training progress p in [0, 1]: shallow layers stay low-level. */
  private pickConcept(l: number, p: number): number {
    const depth = this.spec.layers > 1 ? l / (this.spec.layers - 1) : 0;
    const level = Math.min(1, depth * (0.3 + 0.7 * p)); // 0: colours .. 1: scenes
    const centre = level * (CATEGORIES.length - 1);
    const c = Math.max(
      0,
      Math.min(CATEGORIES.length - 1, Math.round(centre + (this.rnd() + this.rnd() - 1) * 2.5)),
    );
    const pool = this.concepts.byCategory[c];
    return pool.length
      ? pool[Math.floor(this.rnd() * pool.length)]
      : Math.floor(this.rnd() * this.spec.concepts);
  }

  /** The records of checkpoint `index` (0-based): checkpoint, labels and snapshot per layer, alerts. */
  checkpoint(index: number): GeneratedCheckpoint {
    const s = this.spec;
    const p = s.checkpoints > 1 ? index / (s.checkpoints - 1) : 1;
    const step = this.stepAt(index);
    const time = this.timeAt(index);
    const records: CmRecord[] = [
      checkpointRecord(
        s.runId,
        step,
        {
          loss: 2.3 * Math.exp(-3 * p) + 0.15 + 0.03 * (this.rnd() - 0.5),
          accuracy: 0.1 + 0.8 * (1 - Math.exp(-4 * p)) + 0.01 * (this.rnd() - 0.5),
          learningRate: 0.1 * 0.5 * (1 + Math.cos(Math.PI * p)),
        },
        time,
      ),
    ];
    const alerts: AlertRecord[] = [];
    const switchProbability = 0.06 * Math.exp(-5 * p) + 0.003;
    this.layers.forEach((layer, l) => {
      const n = s.neurons;
      const collapse = this.collapses.find((e) => e.layer === l);
      const inCollapse =
        collapse !== undefined && index >= collapse.fromIndex && index < collapse.fromIndex + collapse.length;
      const collapseEnds = collapse !== undefined && index === collapse.fromIndex + collapse.length;
      if (collapse !== undefined && index === collapse.fromIndex) layer.saved.set(layer.concept);
      const labels: NeuronLabel[] = new Array<NeuronLabel>(n);
      for (let k = 0; k < n; k++) {
        if (collapseEnds) layer.concept[k] = layer.saved[k];
        if (!inCollapse && this.rnd() < switchProbability) {
          const current = layer.concept[k];
          const sameCategory = this.concepts.byCategory[this.concepts.categoryIndex[current]];
          layer.concept[k] =
            this.rnd() < 0.7
              ? sameCategory[Math.floor(this.rnd() * sameCategory.length)]
              : this.pickConcept(l, p);
        }
        const c = inCollapse && (k * 7919) % 100 < collapse.share * 100 ? collapse.concept : layer.concept[k];
        const dead = layer.dead[k] === 1;
        const score = dead
          ? 0
          : Math.max(0, 0.08 + 0.45 * Math.sqrt(p) * layer.skill[k] + 0.05 * (this.rnd() - 0.5));
        const group = this.concepts.byCategory[this.concepts.categoryIndex[c]];
        const topConcepts = [this.concepts.names[c]];
        const topScores = [score];
        for (let j = 1; topConcepts.length < 5 && j < 5 + group.length; j++) {
          const other =
            j < group.length ? group[(group.indexOf(c) + j) % group.length] : (c + j * 37) % s.concepts;
          const name = this.concepts.names[other];
          if (topConcepts.includes(name)) continue;
          topConcepts.push(name);
          topScores.push(Math.max(0, score - 0.02 * topConcepts.length - 0.01 * this.rnd()));
        }
        const topImages: number[] = [];
        for (let j = 0; j < 8; j++) topImages.push(Math.floor(this.rnd() * 2000));
        labels[k] = {
          neuron: k,
          concept: this.concepts.names[c],
          conceptIndex: c,
          category: this.concepts.categories[c],
          score,
          interpretable: !dead && score > this.threshold,
          topConcepts,
          topScores,
          topImages,
          embedding: this.embeddings[c],
          x: this.concepts.x[c] + layer.jitterX[k] + 0.01 * (this.rnd() - 0.5),
          y: this.concepts.y[c] + layer.jitterY[k] + 0.01 * (this.rnd() - 0.5),
          dead,
        };
      }
      const metrics = layerMetrics(labels, {
        conceptCount: s.concepts,
        threshold: this.threshold,
        previousTop1: layer.previousTop1,
      });
      // the previous checkpoint's concept on each row, as the engine records it
      const previous = layer.previousTop1;
      const rows = labels.map((l) => labelRow(l, previous ? this.concepts.names[previous[l.neuron]] : ''));
      layer.previousTop1 = Int32Array.from(labels, (x) => x.conceptIndex);
      const dissection: LayerDissection = { labels, metrics, topConcepts: topLayerConcepts(labels) };
      records.push(...labelsRecords(s.runId, layer.name, step, rows, time));
      const snapshot = snapshotRecord(s.runId, layer.name, step, dissection, time);
      records.push(snapshot);
      alerts.push(...this.detector.observe(snapshot));
    });
    records.push(...alerts);
    return { step, records, labelRows: s.layers * s.neurons, alerts };
  }
}
