import { invalidArgument } from '@cm/core';
import { deriveSeed, mulberry32, shuffleInPlace, type Rng } from './rng';
// Module-level aliases: looking up the global `Math` in a hot loop costs microseconds per call
// inside vm contexts (jest), which made rendering 30x slower there.
const { PI, abs, ceil, cos, floor, imul, max, min, round, sin } = Math;

/**
 * The built-in synthetic concept world ("shapes"): small RGB images of one to three objects on a
 * background. Every object has a shape, a colour, a fill texture, a size and a position; the scene
 * has a background and an object count. Every factor value is a concept, so the ground truth of
 * every image is known exactly. The same renderer makes the probe images of a bundle and the
 * training/test images of the classification tasks, so a network trained on the world can be
 * dissected with the world's concepts.
 */

export const WORLD_FACTORS = [
  'shape',
  'colour',
  'texture',
  'size',
  'position',
  'background',
  'count',
] as const;
export type WorldFactor = (typeof WORLD_FACTORS)[number];

export const SHAPES = ['circle', 'square', 'triangle', 'diamond', 'cross', 'ring', 'star', 'bar'] as const;
export const COLOURS = [
  'red',
  'orange',
  'yellow',
  'green',
  'cyan',
  'blue',
  'purple',
  'pink',
  'white',
  'black',
  'gray',
  'brown',
] as const;
export const TEXTURES = ['solid', 'striped', 'checkered', 'dotted', 'gradient', 'speckled'] as const;
export const SIZES = ['small', 'medium', 'large'] as const;
export const POSITIONS = [
  'top-left',
  'top',
  'top-right',
  'left',
  'center',
  'right',
  'bottom-left',
  'bottom',
  'bottom-right',
] as const;
export const BACKGROUNDS = [
  'black background',
  'white background',
  'gray background',
  'sky background',
  'grass background',
  'sand background',
] as const;
export const COUNTS = ['one object', 'two objects', 'three objects'] as const;

export type ShapeName = (typeof SHAPES)[number];
export type ColourName = (typeof COLOURS)[number];
export type TextureName = (typeof TEXTURES)[number];
export type SizeName = (typeof SIZES)[number];
export type PositionName = (typeof POSITIONS)[number];
export type BackgroundName = (typeof BACKGROUNDS)[number];

const FACTOR_VALUES: Record<WorldFactor, readonly string[]> = {
  shape: SHAPES,
  colour: COLOURS,
  texture: TEXTURES,
  size: SIZES,
  position: POSITIONS,
  background: BACKGROUNDS,
  count: COUNTS,
};

/** The world's concept set: every factor value, with its factor as the category. 47 concepts, 7 categories. */
export const WORLD_CONCEPTS: ReadonlyArray<{ name: string; category: WorldFactor }> = WORLD_FACTORS.flatMap(
  (factor) => FACTOR_VALUES[factor].map((name) => ({ name, category: factor })),
);

type Rgb = readonly [number, number, number];
const COLOUR_RGB: Record<ColourName, Rgb> = {
  red: [220, 30, 30],
  orange: [245, 140, 20],
  yellow: [240, 220, 30],
  green: [40, 170, 50],
  cyan: [30, 200, 210],
  blue: [30, 60, 220],
  purple: [140, 40, 190],
  pink: [250, 130, 190],
  white: [245, 245, 245],
  black: [15, 15, 15],
  gray: [128, 128, 128],
  brown: [130, 80, 35],
};
const BACKGROUND_RGB: Record<BackgroundName, Rgb> = {
  'black background': [8, 8, 10],
  'white background': [232, 232, 232],
  'gray background': [100, 100, 104],
  'sky background': [150, 200, 240],
  'grass background': [60, 115, 50],
  'sand background': [215, 195, 150],
};
/** Object colours that would vanish into a background are not drawn on it. */
const HIDDEN_ON: Record<BackgroundName, readonly ColourName[]> = {
  'black background': ['black'],
  'white background': ['white'],
  'gray background': ['gray'],
  'sky background': ['cyan'],
  'grass background': ['green'],
  'sand background': ['yellow'],
};
/** Object half-extent as a fraction of the image side, for a shape of average area (below). */
const SIZE_RADIUS: Record<SizeName, number> = { small: 0.11, medium: 0.17, large: 0.25 };
/**
 * Area of each shape at half-extent 1 (object coordinates of `insideShape`), exact: circle pi,
 * square 1.7^2, triangle 2 x 1.8 / 2, diamond 2, cross 2 x (0.6 x 2) - 0.6^2, ring pi (1 - 0.3),
 * star 10 triangles of sides 1 and 0.45 at 36 degrees, bar 2 x 0.8.
 */
const SHAPE_AREA: Record<ShapeName, number> = {
  circle: PI,
  square: 1.7 * 1.7,
  triangle: 1.8,
  diamond: 2,
  cross: 2.04,
  ring: PI * 0.7,
  star: 10 * 0.5 * 0.45 * sin(PI / 5),
  bar: 1.6,
};
const MEAN_SHAPE_AREA = Object.values(SHAPE_AREA).reduce((a, b) => a + b, 0) / SHAPES.length;
/**
 * Half-extent scale of a shape so that every shape of one size covers the same number of pixels.
 * Why: with one half-extent for all shapes a large circle covered twice the pixels of a large
 * star, so "circle" was confounded with "many object pixels"; a network with global average
 * pooling then had a circle logit that rose with any big object, and CLIP-Dissect labelled it
 * `large` (docs/probe.md, "Size is area").
 */
const AREA_SCALE: Record<ShapeName, number> = Object.fromEntries(
  SHAPES.map((shape) => [shape, Math.sqrt(MEAN_SHAPE_AREA / SHAPE_AREA[shape])]),
) as Record<ShapeName, number>;
/** Cell centres of the 3 x 3 position grid, as fractions of the image side. */
const CELL_CENTRES = [0.2, 0.5, 0.8];

export interface WorldObject {
  shape: ShapeName;
  colour: ColourName;
  texture: TextureName;
  size: SizeName;
  position: PositionName;
  /** Jittered centre (fractions of the image side), half-extent (fraction), RGB after jitter. */
  cx: number;
  cy: number;
  radius: number;
  rgb: [number, number, number];
  /** Seed of the per-pixel texture noise (speckled). */
  noiseSeed: number;
}

export interface WorldScene {
  background: BackgroundName;
  /** Drawn in this order (largest first, so that small objects stay visible). */
  objects: WorldObject[];
  noiseSeed: number;
}

export type ObjectSpec = Partial<Pick<WorldObject, 'shape' | 'colour' | 'texture' | 'size' | 'position'>>;

function sampleObject(
  rng: Rng,
  background: BackgroundName,
  spec: ObjectSpec,
  freeCells: PositionName[],
): WorldObject {
  const shape = spec.shape ?? rng.pick(SHAPES);
  const allowed = COLOURS.filter((c) => !HIDDEN_ON[background].includes(c));
  const colour = spec.colour ?? rng.pick(allowed);
  const texture = spec.texture ?? rng.pick(TEXTURES);
  const size = spec.size ?? rng.pick(SIZES);
  const position = spec.position ?? rng.pick(freeCells);
  const cell = POSITIONS.indexOf(position);
  const jitter = () => rng.range(-0.03, 0.03);
  const base = COLOUR_RGB[colour];
  const rgb = base.map((v) => clampByte(v + rng.range(-10, 10))) as [number, number, number];
  return {
    shape,
    colour,
    texture,
    size,
    position,
    cx: CELL_CENTRES[cell % 3] + jitter(),
    cy: CELL_CENTRES[floor(cell / 3)] + jitter(),
    radius: SIZE_RADIUS[size] * AREA_SCALE[shape] * rng.range(0.92, 1.08),
    rgb,
    noiseSeed: rng.int(0x7fffffff),
  };
}

/**
 * Draw one scene. `fixed` pins factors of the first object (and the background / count), the rest
 * is random. Objects occupy distinct grid cells.
 */
export function sampleScene(
  rng: Rng,
  fixed: { background?: BackgroundName; count?: number; first?: ObjectSpec } = {},
): WorldScene {
  const count = fixed.count ?? 1 + weightedIndex(rng, [0.5, 0.35, 0.15]);
  let background = fixed.background ?? rng.pick(BACKGROUNDS);
  if (
    fixed.background === undefined &&
    fixed.first?.colour &&
    HIDDEN_ON[background].includes(fixed.first.colour)
  ) {
    background = rng.pick(BACKGROUNDS.filter((b) => !HIDDEN_ON[b].includes(fixed.first!.colour!)));
  }
  const freeCells: PositionName[] = [...POSITIONS];
  const objects: WorldObject[] = [];
  for (let k = 0; k < count; k++) {
    const spec = k === 0 ? (fixed.first ?? {}) : {};
    if (spec.position !== undefined && !freeCells.includes(spec.position))
      throw invalidArgument(`position ${spec.position} taken`);
    const obj = sampleObject(rng, background, spec, freeCells);
    freeCells.splice(freeCells.indexOf(obj.position), 1);
    objects.push(obj);
  }
  // Stable sort: larger objects first so that small ones drawn later stay visible.
  const order = objects.map((o, i) => ({ o, i })).sort((a, b) => b.o.radius - a.o.radius || a.i - b.i);
  return { background, objects: order.map((x) => x.o), noiseSeed: rng.int(0x7fffffff) };
}

function weightedIndex(rng: Rng, weights: number[]): number {
  let u = rng.next();
  for (let i = 0; i < weights.length - 1; i++) {
    if (u < weights[i]) return i;
    u -= weights[i];
  }
  return weights.length - 1;
}

function clampByte(v: number): number {
  return max(0, min(255, round(v)));
}

/** Integer hash of (x, y, seed) to [0, 1): cheap per-pixel noise that needs no RNG state. */
function hash01(x: number, y: number, seed: number): number {
  let h = imul(x, 0x27d4eb2d) ^ imul(y, 0x165667b1) ^ seed;
  h = imul(h ^ (h >>> 15), 0x85ebca6b);
  h = imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

const STAR = (() => {
  const pts: Array<[number, number]> = [];
  for (let i = 0; i < 10; i++) {
    const a = -PI / 2 + (i * PI) / 5;
    const r = i % 2 === 0 ? 1 : 0.45;
    pts.push([r * cos(a), r * sin(a)]);
  }
  return pts;
})();

function insidePolygon(u: number, v: number, pts: ReadonlyArray<readonly [number, number]>): boolean {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i];
    const [xj, yj] = pts[j];
    if (yi > v !== yj > v && u < ((xj - xi) * (v - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Is the point (u, v), in object coordinates (centre 0, half-extent 1, v down), inside the shape? */
export function insideShape(shape: ShapeName, u: number, v: number): boolean {
  switch (shape) {
    case 'circle':
      return u * u + v * v <= 1;
    case 'square':
      return abs(u) <= 0.85 && abs(v) <= 0.85;
    case 'triangle': // apex up
      return v >= -0.95 && v <= 0.85 && abs(u) <= (v + 0.95) / 1.8;
    case 'diamond':
      return abs(u) + abs(v) <= 1;
    case 'cross':
      return (abs(u) <= 0.3 && abs(v) <= 1) || (abs(v) <= 0.3 && abs(u) <= 1);
    case 'ring': {
      const r2 = u * u + v * v;
      return r2 <= 1 && r2 >= 0.3;
    }
    case 'star':
      return insidePolygon(u, v, STAR);
    case 'bar':
      return abs(u) <= 1 && abs(v) <= 0.4;
  }
}

/** The darker (or, for dark colours, lighter) tone a texture alternates with; keeps the hue. */
function shadeOf(rgb: readonly number[]): [number, number, number] {
  const lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
  return lum < 40
    ? [rgb[0] + 0.45 * (255 - rgb[0]), rgb[1] + 0.45 * (255 - rgb[1]), rgb[2] + 0.45 * (255 - rgb[2])]
    : [rgb[0] * 0.55, rgb[1] * 0.55, rgb[2] * 0.55];
}

/** Share of the texture's alternate tone at pixel (x, y) of an object, in [0, 1]. */
function textureMix(
  texture: TextureName,
  x: number,
  y: number,
  u: number,
  size: number,
  seed: number,
): number {
  const s = size / 32; // texture periods scale with the image so 32 and 64 px worlds look alike
  switch (texture) {
    case 'solid':
      return 0;
    case 'striped':
      return floor(y / (2 * s)) % 2;
    case 'checkered':
      return (floor(x / (2 * s)) + floor(y / (2 * s))) % 2;
    case 'dotted': {
      const px = floor(x / s) % 5;
      const py = floor(y / s) % 5;
      return (px === 1 || px === 2) && (py === 1 || py === 2) ? 1 : 0;
    }
    case 'gradient':
      return max(0, min(1, (u + 1) / 2));
    case 'speckled':
      return hash01(x, y, seed) < 0.4 ? 1 : 0;
  }
}

const SUBSAMPLES: ReadonlyArray<readonly [number, number]> = [
  [0.25, 0.25],
  [0.75, 0.25],
  [0.25, 0.75],
  [0.75, 0.75],
];

/**
 * Render a scene into `out` (size x size x 3, uint8, row-major RGB) starting at `offset`.
 * Coverage is estimated from 4 subsamples per pixel and blended over what is below. If `mask` is
 * given (size x size, from `maskOffset`), it receives 1 + the index of the topmost object covering
 * at least half of each pixel, 0 for background.
 */
export function renderScene(
  scene: WorldScene,
  size: number,
  out: Uint8Array = new Uint8Array(size * size * 3),
  offset = 0,
  mask?: Uint8Array,
  maskOffset = 0,
): Uint8Array {
  const bg = BACKGROUND_RGB[scene.background];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const n = (hash01(x, y, scene.noiseSeed) - 0.5) * 12; // faint sensor noise: backgrounds are not flat
      const p = offset + (y * size + x) * 3;
      out[p] = clampByte(bg[0] + n);
      out[p + 1] = clampByte(bg[1] + n);
      out[p + 2] = clampByte(bg[2] + n);
    }
  }
  if (mask) mask.fill(0, maskOffset, maskOffset + size * size);
  scene.objects.forEach((obj, index) => {
    const cx = obj.cx * size;
    const cy = obj.cy * size;
    const r = obj.radius * size;
    const shade = shadeOf(obj.rgb);
    const x0 = max(0, floor(cx - r));
    const x1 = min(size - 1, ceil(cx + r));
    const y0 = max(0, floor(cy - r));
    const y1 = min(size - 1, ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        let hits = 0;
        for (const [sx, sy] of SUBSAMPLES)
          if (insideShape(obj.shape, (x + sx - cx) / r, (y + sy - cy) / r)) hits++;
        if (hits === 0) continue;
        const cover = hits / SUBSAMPLES.length;
        const t = textureMix(obj.texture, x, y, (x + 0.5 - cx) / r, size, obj.noiseSeed);
        const p = offset + (y * size + x) * 3;
        for (let c = 0; c < 3; c++) {
          const colour = obj.rgb[c] * (1 - t) + shade[c] * t;
          out[p + c] = clampByte(out[p + c] * (1 - cover) + colour * cover);
        }
        if (mask && cover >= 0.5) mask[maskOffset + y * size + x] = index + 1;
      }
    }
  });
  return out;
}

/** Concept names present in a scene (ground truth). */
export function sceneConcepts(scene: WorldScene): string[] {
  const names = new Set<string>([scene.background, COUNTS[scene.objects.length - 1]]);
  for (const o of scene.objects)
    for (const v of [o.shape, o.colour, o.texture, o.size, o.position]) names.add(v);
  return WORLD_CONCEPTS.map((c) => c.name).filter((n) => names.has(n));
}

export interface ProbeWorld {
  images: Uint8Array;
  shape: [number, number, number, number];
  scenes: WorldScene[];
}

export function checkSize(size: number): 32 | 64 {
  if (size !== 32 && size !== 64) throw invalidArgument(`image size must be 32 or 64, got ${size}`, { size });
  return size;
}

function checkCount(count: number, what: string): void {
  if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
    throw invalidArgument(`${what} must be an integer from 1 to 1000000, got ${count}`, { [what]: count });
  }
}

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw invalidArgument(`seed must be an integer from 0 to 4294967295, got ${seed}`, { seed });
  }
}

/** The probe images of the world: `images` random scenes with 1 to 3 objects (50/35/15 %). */
export function renderProbeWorld(opts: { images: number; seed: number; size?: number }): ProbeWorld {
  checkCount(opts.images, 'images');
  checkSeed(opts.seed);
  const size = checkSize(opts.size ?? 32);
  const rng = mulberry32(deriveSeed(opts.seed, 'shapes/probe'));
  const scenes = Array.from({ length: opts.images }, () => sampleScene(rng));
  const images = new Uint8Array(opts.images * size * size * 3);
  scenes.forEach((scene, i) => renderScene(scene, size, images, i * size * size * 3));
  return { images, shape: [opts.images, size, size, 3], scenes };
}

// ---- Classification tasks for the trainer ----

/** A task is a factor ('shape') or a composition of distinct factors ('shape+colour'). */
export type WorldTask =
  WorldFactor | `${WorldFactor}+${WorldFactor}` | `${WorldFactor}+${WorldFactor}+${WorldFactor}`;

/** The tasks listed in help texts; any composition of distinct factors parses. */
export const WORLD_TASKS: readonly WorldTask[] = [
  ...WORLD_FACTORS,
  'shape+colour',
  'shape+texture',
  'colour+texture',
  'shape+size',
];

export function parseWorldTask(task: string): WorldFactor[] {
  const factors = task.split('+').map((f) => f.trim());
  for (const f of factors) {
    if (!(WORLD_FACTORS as readonly string[]).includes(f)) {
      throw invalidArgument(
        `unknown world task '${task}': '${f}' is not one of ${WORLD_FACTORS.join(', ')}`,
        { task },
        "compose factors with '+', e.g. shape+colour",
      );
    }
  }
  if (new Set(factors).size !== factors.length)
    throw invalidArgument(`world task '${task}' repeats a factor`, { task });
  return factors as WorldFactor[];
}

export interface WorldDataset {
  /** N x H x W x 3, uint8. */
  images: Uint8Array;
  labels: Int32Array;
  classNames: string[];
  shape: [number, number, number, number];
}

/**
 * Labelled images for a classification task. Classes are the combinations of the task's factor
 * values (colour/background combinations that would be invisible are left out), named by joining
 * the values with '+'. Labels are stratified (class i % K, then shuffled) so every class is
 * present in even small sets. Scenes hold one object unless the task includes 'count'.
 *
 * Train and test splits are different seeds: `makeWorldDataset({ task, count, seed: s })` for
 * training and `seed: s + 1` (any other seed) for testing. Object jitter, colour jitter and noise are
 * continuous, so two seeds practically never draw the same image. Streams are also salted by
 * purpose, so a dataset never reproduces the probe images of a bundle made with the same seed.
 */
export function makeWorldDataset(opts: {
  task?: WorldTask | string;
  count: number;
  seed: number;
  size?: 32 | 64;
}): WorldDataset {
  const task = opts.task ?? 'shape';
  const factors = parseWorldTask(task);
  checkCount(opts.count, 'count');
  checkSeed(opts.seed);
  const size = checkSize(opts.size ?? 32);
  let combos: string[][] = [[]];
  for (const f of factors) combos = combos.flatMap((prefix) => FACTOR_VALUES[f].map((v) => [...prefix, v]));
  const valueOf = (combo: string[], f: WorldFactor): string | undefined => {
    const i = factors.indexOf(f);
    return i < 0 ? undefined : combo[i];
  };
  combos = combos.filter((combo) => {
    const colour = valueOf(combo, 'colour') as ColourName | undefined;
    const bg = valueOf(combo, 'background') as BackgroundName | undefined;
    return !(colour && bg && HIDDEN_ON[bg].includes(colour));
  });
  const classNames = combos.map((c) => c.join('+'));
  const rng = mulberry32(deriveSeed(opts.seed, `shapes/dataset/${factors.join('+')}`));
  const labels = shuffleInPlace(
    Array.from({ length: opts.count }, (_, i) => i % combos.length),
    rng,
  );
  const images = new Uint8Array(opts.count * size * size * 3);
  labels.forEach((label, i) => {
    const combo = combos[label];
    const countName = valueOf(combo, 'count');
    const scene = sampleScene(rng, {
      background: valueOf(combo, 'background') as BackgroundName | undefined,
      count: countName === undefined ? 1 : COUNTS.indexOf(countName as (typeof COUNTS)[number]) + 1,
      first: {
        shape: valueOf(combo, 'shape') as ShapeName | undefined,
        colour: valueOf(combo, 'colour') as ColourName | undefined,
        texture: valueOf(combo, 'texture') as TextureName | undefined,
        size: valueOf(combo, 'size') as SizeName | undefined,
        position: valueOf(combo, 'position') as PositionName | undefined,
      },
    });
    renderScene(scene, size, images, i * size * size * 3);
  });
  return { images, labels: Int32Array.from(labels), classNames, shape: [opts.count, size, size, 3] };
}
