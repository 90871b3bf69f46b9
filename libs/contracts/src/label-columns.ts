import {
  RecordValidationError,
  validateRecord,
  type LabelsRecord,
  type NeuronLabelRow,
  type CmRecord,
} from './records';

/**
 * The compact, columnar wire form of a labels record (optional; the row form `LabelsRecord` is
 * always accepted too).
 *
 * A labels record is hundreds of rows of the same ten fields; as JSON objects every row repeats its
 * keys and its concept names, and decoding it builds one object and two arrays per neuron. The
 * columnar form carries the same values as one array per field, with every string (concept,
 * category, top concept) stored once in `strings` and referenced by index. It is plain JSON
 * (readable with `nats stream view`), a third to a half of the bytes (the evidence image indices are
 * numbers in both forms), and decodes several times faster
 * (arrays of numbers, no per-row objects): the recorder's hot path.
 *
 *   { kind: 'labels', runId, layer, step, part, parts, time,
 *     columns: { strings, neuron, concept, category, score, interpretable, dead,
 *                topConceptCount, topConcepts, topScoreCount, topScores, x, y,
 *                topImageCount, topImages, previousConcept } }
 *
 * Row i is: neuron[i], strings[concept[i]], strings[category[i]], score[i], interpretable[i] (0/1),
 * dead[i] (0/1), the next topConceptCount[i] entries of topConcepts (indexes into strings), the next
 * topScoreCount[i] entries of topScores, x[i], y[i], the next topImageCount[i] entries of topImages
 * (probe image indices; both columns absent in messages from before the evidence column). Non-finite floats travel as JSON null (as in the
 * row form, where JSON.stringify writes NaN as null) and are stored as the row form stores them:
 * x/y null as 0, a top score null as nan; a score must be a finite number.
 *
 * Message ids and subjects do not change: a columnar message of neurons a..b has the id of the row
 * form's message of neurons a..b (`labels.<run>.<layer>.<step>.<a>.<b>`).
 */
export interface LabelColumns {
  /** Every distinct string of the rows (concepts, categories, top concepts), referenced by index. */
  strings: string[];
  neuron: number[];
  /** Index into `strings`. */
  concept: number[];
  /** Index into `strings`. */
  category: number[];
  score: number[];
  /** 0 or 1. */
  interpretable: number[];
  /** 0 or 1. */
  dead: number[];
  /** Top concepts of each row (their concatenation is `topConcepts`). */
  topConceptCount: number[];
  /** Indexes into `strings`, rows one after another. */
  topConcepts: number[];
  topScoreCount: number[];
  topScores: (number | null)[];
  x: (number | null)[];
  y: (number | null)[];
  /**
   * Top activating probe images of each row (their concatenation is `topImages`): image indices,
   * best first. Both absent in messages of producers before the evidence column: every row gets [].
   */
  topImageCount?: number[];
  topImages?: number[];
  /**
   * Index into `strings` of each row's concept at the previous checkpoint of the layer (the empty
   * string at the first; NeuronLabelRow.previousConcept). Absent in messages of producers before
   * the column: every row gets ''.
   */
  previousConcept?: number[];
}

export interface LabelsColumnsRecord extends Omit<LabelsRecord, 'labels'> {
  columns: LabelColumns;
}

/** What a message on the stream decodes to: any record, or a labels record in columnar form. */
export type WireRecord = CmRecord | LabelsColumnsRecord;

export function isLabelsColumnsRecord(record: WireRecord): record is LabelsColumnsRecord {
  return record.kind === 'labels' && 'columns' in record;
}

/** Rows -> columns (the publisher's side). Strings are not checked here (the store checks them). */
export function toLabelColumns(rows: readonly NeuronLabelRow[]): LabelColumns {
  const strings: string[] = [];
  const index = new Map<string, number>();
  const idOf = (s: string): number => {
    let i = index.get(s);
    if (i === undefined) {
      index.set(s, (i = strings.length));
      strings.push(s);
    }
    return i;
  };
  const n = rows.length;
  const c: LabelColumns = {
    strings,
    neuron: new Array<number>(n),
    concept: new Array<number>(n),
    category: new Array<number>(n),
    score: new Array<number>(n),
    interpretable: new Array<number>(n),
    dead: new Array<number>(n),
    topConceptCount: new Array<number>(n),
    topConcepts: [],
    topScoreCount: new Array<number>(n),
    topScores: [],
    x: new Array<number>(n),
    y: new Array<number>(n),
    topImageCount: new Array<number>(n),
    topImages: [],
  };
  // only where a row has it, so rows of producers before the column come back as they went
  const previous = rows.some((r) => r.previousConcept !== undefined) ? new Array<number>(n) : undefined;
  if (previous) c.previousConcept = previous;
  const imageCount = c.topImageCount as number[];
  const images = c.topImages as number[];
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    c.neuron[i] = r.neuron;
    c.concept[i] = idOf(r.concept);
    c.category[i] = idOf(r.category ?? '');
    c.score[i] = r.score;
    c.interpretable[i] = r.interpretable ? 1 : 0;
    c.dead[i] = r.dead ? 1 : 0;
    const top = Array.isArray(r.topConcepts) ? r.topConcepts : [];
    c.topConceptCount[i] = top.length;
    for (const t of top) c.topConcepts.push(idOf(t));
    const scores = Array.isArray(r.topScores) ? r.topScores : [];
    c.topScoreCount[i] = scores.length;
    for (const s of scores) c.topScores.push(s);
    c.x[i] = r.x ?? 0;
    c.y[i] = r.y ?? 0;
    const evidence = Array.isArray(r.topImages) ? r.topImages : [];
    imageCount[i] = evidence.length;
    for (const k of evidence) images.push(k);
    if (previous) previous[i] = idOf(r.previousConcept ?? '');
  }
  return c;
}

/** Columns -> rows (for consumers that want the row form back). */
export function fromLabelColumns(c: LabelColumns): NeuronLabelRow[] {
  const rows: NeuronLabelRow[] = [];
  let t = 0;
  let s = 0;
  let m = 0;
  for (let i = 0; i < c.neuron.length; i++) {
    const topConcepts = c.topConcepts.slice(t, (t += c.topConceptCount[i])).map((k) => c.strings[k]);
    const topScores = c.topScores
      .slice(s, (s += c.topScoreCount[i]))
      .map((v) => (v === null ? Number.NaN : v));
    rows.push({
      neuron: c.neuron[i],
      concept: c.strings[c.concept[i]],
      category: c.strings[c.category[i]],
      score: c.score[i],
      interpretable: c.interpretable[i] === 1,
      dead: c.dead[i] === 1,
      topConcepts,
      topScores,
      topImages: c.topImageCount && c.topImages ? c.topImages.slice(m, (m += c.topImageCount[i])) : [],
      x: c.x[i] ?? 0,
      y: c.y[i] ?? 0,
      ...(c.previousConcept ? { previousConcept: c.strings[c.previousConcept[i]] } : {}),
    });
  }
  return rows;
}

/** A labels record in columnar form, for publishing. */
export function toLabelsColumnsRecord(record: LabelsRecord): LabelsColumnsRecord {
  const { labels, ...header } = record;
  return { ...header, columns: toLabelColumns(labels) };
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;

/**
 * Structural check of a columnar labels message: the header as `validateRecord` checks a labels
 * record, every column an array of the right length, every index inside `strings`, counts that add
 * up. Plain loops: it runs on every message in the recorder's hot path.
 */
export function validateLabelsColumnsRecord(value: unknown): LabelsColumnsRecord {
  const fail = (p: string): never => {
    throw new RecordValidationError(`labels (columns): ${p}`);
  };
  if (typeof value !== 'object' || value === null) return fail('not an object');
  const r = value as Record<string, unknown>;
  if (r.kind !== 'labels') fail('kind is not labels');
  if (!isStr(r.runId) || r.runId.length === 0) fail('runId missing');
  if (!isStr(r.time) || Number.isNaN(Date.parse(r.time))) fail('time is not an ISO date');
  if (!isStr(r.layer) || !isInt(r.step)) fail('layer or step');
  const c = r.columns as Record<string, unknown> | null;
  if (typeof c !== 'object' || c === null) return fail('columns missing');
  const array = (name: keyof LabelColumns, length?: number): unknown[] => {
    const a = c[name];
    if (!Array.isArray(a)) return fail(`${name} is not an array`);
    if (length !== undefined && a.length !== length)
      fail(`${name} has ${a.length} entries, expected ${length}`);
    return a;
  };
  const strings = array('strings');
  for (let i = 0; i < strings.length; i++) if (!isStr(strings[i])) fail(`strings[${i}] is not a string`);
  const neuron = array('neuron');
  const n = neuron.length;
  const nStrings = strings.length;
  const indexes = (name: keyof LabelColumns, length?: number): void => {
    const a = array(name, length);
    for (let i = 0; i < a.length; i++) {
      const k = a[i];
      if (!isInt(k) || k >= nStrings) fail(`${name}[${i}] is not an index into strings`);
    }
  };
  const counts = (name: keyof LabelColumns): number => {
    const a = array(name, n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      if (!isInt(a[i])) fail(`${name}[${i}] is not a count`);
      total += a[i] as number;
    }
    return total;
  };
  const floats = (name: keyof LabelColumns, length: number): void => {
    const a = array(name, length);
    for (let i = 0; i < length; i++)
      if (a[i] !== null && typeof a[i] !== 'number') fail(`${name}[${i}] is not a number`);
  };
  const flags = (name: keyof LabelColumns): void => {
    const a = array(name, n);
    for (let i = 0; i < n; i++) if (a[i] !== 0 && a[i] !== 1) fail(`${name}[${i}] is not 0 or 1`);
  };
  for (let i = 0; i < n; i++) if (!isInt(neuron[i])) fail(`neuron[${i}] is not a neuron index`);
  indexes('concept', n);
  indexes('category', n);
  const score = array('score', n);
  for (let i = 0; i < n; i++) if (!isNum(score[i])) fail(`score[${i}] is not a finite number`);
  flags('interpretable');
  flags('dead');
  indexes('topConcepts', counts('topConceptCount'));
  floats('topScores', counts('topScoreCount'));
  floats('x', n);
  floats('y', n);
  if (c.topImageCount !== undefined || c.topImages !== undefined) {
    const images = array('topImages', counts('topImageCount'));
    for (let i = 0; i < images.length; i++)
      if (!isInt(images[i]) || (images[i] as number) > 0xffffffff)
        fail(`topImages[${i}] is not an image index`);
  }
  if (c.previousConcept !== undefined) indexes('previousConcept', n);
  return value as LabelsColumnsRecord;
}

/**
 * Check a decoded message of either form: a labels record with `columns` is checked as the columnar
 * form, anything else by `validateRecord`.
 */
export function validateWireRecord(value: unknown): WireRecord {
  if (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === 'labels' &&
    'columns' in value
  ) {
    if ('labels' in value) throw new RecordValidationError('labels: both labels and columns');
    return validateLabelsColumnsRecord(value);
  }
  return validateRecord(value);
}
