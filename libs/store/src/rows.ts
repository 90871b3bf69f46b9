import {
  isLabelsColumnsRecord,
  TABLES,
  toLabelColumns,
  type CmRecord,
  type LabelColumns,
  type WireRecord,
} from '@cm/contracts';
import { invalidArgument } from '@cm/core';

/**
 * Records -> insert lines per table (the functional core of the store). Rows are data in an
 * insert body, never SQL, so no value from a trainer is spliced into a statement.
 *
 * Most tables get JSONEachRow lines (JSON.stringify of an object). Neuron labels, the hot path
 * (hundreds of thousands of rows per second), are written with an explicit column list as
 * RowBinary (server) or TabSeparated (chDB), see LabelFormat, straight from a record's columns
 * (LabelColumns: the columnar wire form as it is, the row form converted once), with no row
 * objects in between. No library writes ClickHouse TSV or RowBinary from JS values, so the
 * writers below are hand-written to ClickHouse's rules (TSV field: \\ \t \n \r \0; quoted
 * string inside an array: the same plus \'; RowBinary: little-endian numbers, varint-prefixed
 * strings and arrays), and the store tests round-trip hostile strings through both engines.
 *
 * Encodings that work on every server we support (18.16 .. 26):
 *  - times: DateTime as unix seconds (no time zone ambiguity, no DateTime64 on 18.16) plus
 *    `time_ms` (UInt64) which is also the ReplacingMergeTree version;
 *  - maps (tags, metrics, category shares): Nested pairs of arrays (no Map type on 18.16);
 *  - booleans: UInt8 0/1;
 *  - non-finite floats: the strings "nan" / "inf" / "-inf", which every version parses into a
 *    Float column (JSON has no NaN, and a diverging loss is exactly when you want it stored).
 * Every column is always written: 18.16 does not fill DEFAULTs for fields omitted in JSONEachRow.
 */
export type TableKey = 'runs' | 'checkpoints' | 'neuronLabels' | 'layerMetrics' | 'alerts';

/**
 * How neuron label rows are encoded. RowBinary (ClickHouse's native row format: little-endian
 * numbers, length-prefixed strings) is the fastest to write here and to parse on the server, and
 * the server store uses it. chDB's connection turns an insert body into a UTF-8 string, which
 * would corrupt binary data, so the chDB store uses TabSeparated.
 */
export type LabelFormat = 'TabSeparated' | 'RowBinary';

export interface TableRows {
  /**
   * Encoded rows per table, in INSERT_FORMAT's format: chunks of one or more lines joined by '\n'
   * (no trailing newline); a labels record is one chunk. Neuron labels are here only when
   * labelFormat is TabSeparated.
   */
  lines: Record<TableKey, string[]>;
  /** Rows per table (a chunk may hold many). */
  counts: Record<TableKey, number>;
  labelFormat: LabelFormat;
  /** Neuron label rows as RowBinary, one buffer per labels record (labelFormat RowBinary). */
  labelBytes: Uint8Array[];
  /** Concepts seen in label rows: runId -> concept -> category (fills the concept dictionary). */
  labelConcepts: Map<string, Map<string, string>>;
  /** Bundles of the runs seen: runId -> bundleId. */
  runBundles: Map<string, string>;
}

export const TABLE_OF: Record<TableKey, string> = {
  runs: TABLES.runs,
  checkpoints: TABLES.checkpoints,
  neuronLabels: TABLES.neuronLabels,
  layerMetrics: TABLES.layerMetrics,
  alerts: TABLES.alerts,
};
export const TABLE_KEYS = Object.keys(TABLE_OF) as TableKey[];

/** How each table's lines are encoded: the FORMAT clause (and column list) of its INSERT. */
export const NEURON_LABEL_COLUMNS = [
  'run_id',
  'layer',
  'step',
  'neuron',
  'concept',
  'category',
  'score',
  'interpretable',
  'dead',
  'top_concepts',
  'top_scores',
  'x',
  'y',
  'time',
  'time_ms',
  'top_images',
  'previous_concept',
] as const;
export const INSERT_FORMAT: Record<
  TableKey,
  { format: 'JSONEachRow' | 'TabSeparated'; columns?: readonly string[] }
> = {
  runs: { format: 'JSONEachRow' },
  checkpoints: { format: 'JSONEachRow' },
  neuronLabels: { format: 'TabSeparated', columns: NEURON_LABEL_COLUMNS },
  layerMetrics: { format: 'JSONEachRow' },
  alerts: { format: 'JSONEachRow' },
};

const TSV_SPECIAL = /[\\\t\n\r\0]/;
const TSV_SPECIAL_G = /[\\\t\n\r\0]/g;
const QUOTED_SPECIAL = /[\\'\t\n\r\0]/;
const QUOTED_SPECIAL_G = /[\\'\t\n\r\0]/g;
const ESCAPES: Record<string, string> = {
  '\\': '\\\\',
  "'": "\\'",
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
  '\0': '\\0',
};
const escapeChar = (c: string): string => ESCAPES[c];

/** A String value as a TabSeparated field. */
export function tsvString(s: string): string {
  return TSV_SPECIAL.test(s) ? s.replace(TSV_SPECIAL_G, escapeChar) : s;
}

/** A String as a quoted literal inside a TSV Array field: ['a','b\'c']. */
export function tsvQuoted(s: string): string {
  return "'" + (QUOTED_SPECIAL.test(s) ? s.replace(QUOTED_SPECIAL_G, escapeChar) : s) + "'";
}

/** A float as TSV text: JS number text, or nan / inf / -inf. */
function floatTsv(v: number): string {
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : String(float(v));
}

export function emptyRows(labelFormat: LabelFormat = 'TabSeparated'): TableRows {
  return {
    lines: { runs: [], checkpoints: [], neuronLabels: [], layerMetrics: [], alerts: [] },
    counts: { runs: 0, checkpoints: 0, neuronLabels: 0, layerMetrics: 0, alerts: 0 },
    labelFormat,
    labelBytes: [],
    labelConcepts: new Map(),
    runBundles: new Map(),
  };
}

const UINT32_MAX = 0xffffffff;
const J = JSON.stringify;

/** A float as a JSON value: finite numbers as they are, NaN and infinities as ClickHouse spells them. */
export function float(v: number): number | string {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v !== 'number' || Number.isNaN(v)) return 'nan';
  return v > 0 ? 'inf' : '-inf';
}

function uint32(v: number, what: string, record: WireRecord): number {
  if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) {
    throw invalidArgument(`${what} must be an integer in 0..${UINT32_MAX}, got ${v}`, {
      kind: record.kind,
      runId: record.runId,
      [what]: v,
    });
  }
  return v;
}

function str(v: unknown, what: string, record: WireRecord): string {
  if (typeof v !== 'string')
    throw invalidArgument(`${what} must be a string`, { kind: record.kind, runId: record.runId });
  return v;
}

function times(iso: string, record: WireRecord): { time: number; time_ms: number } {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms) || ms < 0)
    throw invalidArgument(`time is not a valid ISO date: ${iso}`, { kind: record.kind, runId: record.runId });
  return { time: Math.floor(ms / 1000), time_ms: ms };
}

function seconds(iso: string | undefined): number {
  if (!iso) return 0;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) || ms < 0 ? 0 : Math.floor(ms / 1000);
}

/**
 * Append the rows of one record. All or nothing: a value no column can hold throws
 * CmError('INVALID_ARGUMENT') before anything is appended, so the recorder can terminate that one
 * message and keep the rest of its batch.
 */
export function appendRows(out: TableRows, record: WireRecord): void {
  const t = times(record.time, record);
  switch (record.kind) {
    case 'run': {
      const tags = Object.entries(record.tags ?? {});
      const line = J({
        run_id: record.runId,
        model: String(record.model ?? ''),
        paradigm: String(record.paradigm ?? ''),
        bundle_id: str(record.bundleId, 'bundleId', record),
        'layers.name': record.layers.map((l) => String(l.name)),
        'layers.width': record.layers.map((l) => uint32(l.width, 'layer width', record)),
        'tags.key': tags.map(([k]) => k),
        'tags.value': tags.map(([, v]) => String(v)),
        status: String(record.status),
        started_at: seconds(record.startedAt),
        ended_at: seconds(record.endedAt),
        setup_method: record.setup?.method ?? '',
        setup_params: record.setup?.params ?? '',
        setup_pooling: record.setup?.pooling ?? '',
        setup_calibration: record.setup?.calibration ?? '',
        concept_set_hash: record.setup?.conceptSetHash ?? '',
        clip_model: record.setup?.clipModel ?? '',
        code_version: record.setup?.codeVersion ?? '',
        ...t,
      });
      out.lines.runs.push(line);
      out.counts.runs++;
      out.runBundles.set(record.runId, record.bundleId);
      return;
    }
    case 'checkpoint': {
      const metrics = Object.entries(record.metrics);
      out.counts.checkpoints++;
      out.lines.checkpoints.push(
        J({
          run_id: record.runId,
          step: uint32(record.step, 'step', record),
          'metrics.name': metrics.map(([k]) => k),
          'metrics.value': metrics.map(([, v]) => float(Number(v))),
          ...t,
        }),
      );
      return;
    }
    case 'labels': {
      appendLabels(out, record, t);
      return;
    }
    case 'snapshot': {
      const shares = Object.entries(record.categoryShares ?? {});
      const top = record.topConcepts ?? [];
      out.counts.layerMetrics++;
      out.lines.layerMetrics.push(
        J({
          run_id: record.runId,
          layer: str(record.layer, 'layer', record),
          step: uint32(record.step, 'step', record),
          neurons: uint32(record.neurons, 'neurons', record),
          interpretable_fraction: float(record.interpretableFraction),
          mean_top_score: float(record.meanTopScore),
          distinct_concept_share: float(record.distinctConceptShare),
          label_entropy: float(record.labelEntropy),
          embedding_spread: float(record.embeddingSpread),
          dead_fraction: float(record.deadFraction),
          switches: uint32(record.switches, 'switches', record),
          switch_fraction: float(record.switchFraction),
          threshold: float(record.threshold),
          learned_fraction: record.learnedFraction == null ? null : float(record.learnedFraction),
          learned_chance: record.learnedChance == null ? null : float(record.learnedChance),
          'category_shares.category': shares.map(([k]) => k),
          'category_shares.share': shares.map(([, v]) => float(v)),
          'top_concepts.concept': top.map((c) => String(c.concept)),
          'top_concepts.count': top.map((c) => uint32(c.count, 'top concept count', record)),
          ...t,
        }),
      );
      return;
    }
    case 'alert': {
      out.counts.alerts++;
      out.lines.alerts.push(
        J({
          alert_id: record.alertId,
          run_id: record.runId,
          layer: String(record.layer ?? ''),
          step: uint32(record.step, 'step', record),
          rule: record.rule,
          state: record.state,
          severity: String(record.severity ?? 'warning'),
          value: float(record.value),
          threshold: float(record.threshold),
          message: String(record.message ?? ''),
          ...t,
        }),
      );
      return;
    }
  }
}

export function recordsToRows(records: CmRecord[]): TableRows {
  const out = emptyRows();
  for (const r of records) appendRows(out, r);
  return out;
}

export function rowCount(rows: TableRows): number {
  return TABLE_KEYS.reduce((n, k) => n + rows.counts[k], 0);
}

/**
 * Neuron label rows of one labels record, in either wire form (rows are turned into columns first:
 * one encoder for both). Everything that can refuse the record is checked before anything is
 * written, so a refused record leaves `out` untouched.
 */
function appendLabels(
  out: TableRows,
  record: Extract<WireRecord, { kind: 'labels' }>,
  t: { time: number; time_ms: number },
): void {
  const layer = str(record.layer, 'layer', record);
  const step = uint32(record.step, 'step', record);
  if (t.time > UINT32_MAX)
    throw invalidArgument(`time ${record.time} is past the DateTime range (2106)`, {
      kind: record.kind,
      runId: record.runId,
    });
  const c = isLabelsColumnsRecord(record) ? record.columns : toLabelColumns(record.labels);
  const { strings } = c;
  for (let i = 0; i < strings.length; i++) str(strings[i], 'concept, category and top concept', record);
  const n = c.neuron.length;
  for (let i = 0; i < n; i++) uint32(c.neuron[i], 'neuron', record);
  if (c.previousConcept)
    for (let i = 0; i < n; i++)
      if (!(c.previousConcept[i] >= 0 && c.previousConcept[i] < strings.length))
        throw invalidArgument(`previousConcept[${i}] is not an index into strings`, {
          kind: record.kind,
          runId: record.runId,
        });
  if (n === 0) return;

  if (out.labelFormat === 'RowBinary') out.labelBytes.push(labelsRowBinary(record.runId, layer, step, t, c));
  else out.lines.neuronLabels.push(labelsTsv(record.runId, layer, step, t, c));
  out.counts.neuronLabels += n;

  // concept -> category for the dictionary (the last row of a concept wins, as before)
  const categoryOf = new Int32Array(strings.length).fill(-1);
  for (let i = 0; i < n; i++) categoryOf[c.concept[i]] = c.category[i];
  let seen = out.labelConcepts.get(record.runId);
  if (!seen) out.labelConcepts.set(record.runId, (seen = new Map()));
  for (let k = 0; k < strings.length; k++)
    if (categoryOf[k] >= 0) seen.set(strings[k], strings[categoryOf[k]]);
}

/**
 * The evidence columns of a record, or none (messages written before top_images existed: every row
 * gets []). Counts that do not add up to the list were refused by validation; here they only read.
 */
function topImageColumns(c: LabelColumns): { imageCount?: number[]; imageList: number[] } {
  return c.topImageCount && c.topImages
    ? { imageCount: c.topImageCount, imageList: c.topImages }
    : { imageList: [] };
}

/** An image index for a UInt32 column (checked: a bad index is refused, never wrapped). */
function imageIndex(list: number[], k: number): number {
  const v = list[k];
  if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX)
    throw invalidArgument(`top image index ${String(v)} is not a UInt32`, { index: k });
  return v;
}

/** Columns in NEURON_LABEL_COLUMNS order as TabSeparated lines (no trailing newline). */
function labelsTsv(
  runId: string,
  layer: string,
  step: number,
  t: { time: number; time_ms: number },
  c: LabelColumns,
): string {
  const prefix = `${tsvString(runId)}\t${tsvString(layer)}\t${step}\t`;
  const suffix = `\t${t.time}\t${t.time_ms}`;
  // every string of the record escaped once (fields), quoted on first use (array items)
  const field = c.strings.map(tsvString);
  const quoted: (string | undefined)[] = new Array<string | undefined>(c.strings.length);
  const { imageCount, imageList } = topImageColumns(c);
  const previous = c.previousConcept;
  let chunk = '';
  let tc = 0;
  let ts = 0;
  let ti = 0;
  for (let i = 0; i < c.neuron.length; i++) {
    let top = '';
    for (let end = tc + c.topConceptCount[i], first = true; tc < end; tc++, first = false) {
      const k = c.topConcepts[tc];
      top += (first ? '' : ',') + (quoted[k] ??= tsvQuoted(c.strings[k]));
    }
    let scores = '';
    for (let end = ts + c.topScoreCount[i], first = true; ts < end; ts++, first = false)
      scores += (first ? '' : ',') + floatTsv(c.topScores[ts] as number);
    let images = '';
    if (imageCount)
      for (let end = ti + imageCount[i], first = true; ti < end; ti++, first = false)
        images += (first ? '' : ',') + imageIndex(imageList, ti);
    chunk +=
      (i ? '\n' : '') +
      prefix +
      c.neuron[i] +
      '\t' +
      field[c.concept[i]] +
      '\t' +
      field[c.category[i]] +
      '\t' +
      floatTsv(c.score[i]) +
      (c.interpretable[i] ? '\t1' : '\t0') +
      (c.dead[i] ? '\t1' : '\t0') +
      '\t[' +
      top +
      ']\t[' +
      scores +
      ']\t' +
      floatTsv(c.x[i] ?? 0) +
      '\t' +
      floatTsv(c.y[i] ?? 0) +
      suffix +
      '\t[' +
      images +
      ']\t' +
      (previous ? field[previous[i]] : '');
  }
  return chunk;
}

/** Length of an unsigned LEB128 varint (RowBinary's string and array length prefix). */
function varintLength(n: number): number {
  let length = 1;
  while (n >= 0x80) {
    n >>>= 7;
    length++;
  }
  return length;
}

function writeVarint(buf: Uint8Array, o: number, n: number): number {
  while (n >= 0x80) {
    buf[o++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[o++] = n;
  return o;
}

/** Strings are short (concept names): a byte loop beats a native copy call per string. */
function copyBytes(to: Uint8Array, o: number, bytes: Uint8Array): number {
  for (let b = 0; b < bytes.length; b++) to[o++] = bytes[b];
  return o;
}

/** Strings as RowBinary (varint byte length, then the UTF-8 bytes), all in one buffer: string k is bytes[start[k] .. start[k + 1]). */
function rowBinaryStrings(strings: readonly string[]): { bytes: Buffer; start: Int32Array } {
  const start = new Int32Array(strings.length + 1);
  const lengths = new Int32Array(strings.length);
  let size = 0;
  for (let k = 0; k < strings.length; k++) {
    lengths[k] = Buffer.byteLength(strings[k], 'utf8');
    start[k] = size;
    size += varintLength(lengths[k]) + lengths[k];
  }
  start[strings.length] = size;
  const bytes = Buffer.allocUnsafe(size);
  for (let k = 0; k < strings.length; k++)
    bytes.write(strings[k], writeVarint(bytes, start[k], lengths[k]), 'utf8');
  return { bytes, start };
}

/** Copy string k of rowBinaryStrings into `to` at `o`; returns the offset after it. */
function copyString(
  to: Uint8Array,
  o: number,
  strings: { bytes: Buffer; start: Int32Array },
  k: number,
): number {
  const { bytes, start } = strings;
  for (let b = start[k], end = start[k + 1]; b < end; b++) to[o++] = bytes[b];
  return o;
}

/**
 * Columns in NEURON_LABEL_COLUMNS order as RowBinary (RowBinary is not something a library writes
 * from JS values for 18.16's types, and it is a few lines: little-endian UInt32/Float32/UInt64,
 * strings and arrays prefixed with a varint length). Floats go in as Float32, the column type, so
 * ClickHouse stores exactly what its text parser would have (round to nearest); NaN and infinities
 * are plain IEEE values here. The record is sized first, then written into one buffer.
 */
function labelsRowBinary(
  runId: string,
  layer: string,
  step: number,
  t: { time: number; time_ms: number },
  c: LabelColumns,
): Uint8Array {
  const head = rowBinaryStrings([runId, layer]);
  const prefix = Buffer.concat([head.bytes, Buffer.from(new Uint32Array([step]).buffer)]);
  const encoded = rowBinaryStrings(c.strings);
  const length = (k: number): number => encoded.start[k + 1] - encoded.start[k];
  const n = c.neuron.length;
  const { imageCount, imageList } = topImageColumns(c);
  const previous = c.previousConcept;
  // fixed part of a row: prefix, neuron, score, 2 flags, x, y, time, time_ms (and previous_concept
  // as '', one byte, when the record has no such column)
  let size = n * (prefix.length + 4 + 4 + 2 + 4 + 4 + 4 + 8 + (previous ? 0 : 1));
  for (let i = 0; i < n; i++) {
    size += length(c.concept[i]) + length(c.category[i]) + (previous ? length(previous[i]) : 0);
    size += varintLength(c.topConceptCount[i]) + varintLength(c.topScoreCount[i]) + 4 * c.topScoreCount[i];
    const images = imageCount ? imageCount[i] : 0;
    size += varintLength(images) + 4 * images;
  }
  for (let k = 0; k < c.topConcepts.length; k++) size += length(c.topConcepts[k]);

  const buf = Buffer.allocUnsafe(size);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const timeMsLow = t.time_ms % 0x1_0000_0000;
  const timeMsHigh = Math.floor(t.time_ms / 0x1_0000_0000);
  let o = 0;
  let tc = 0;
  let ts = 0;
  let ti = 0;
  for (let i = 0; i < n; i++) {
    o = copyBytes(buf, o, prefix);
    view.setUint32(o, c.neuron[i], true);
    o += 4;
    o = copyString(buf, o, encoded, c.concept[i]);
    o = copyString(buf, o, encoded, c.category[i]);
    view.setFloat32(o, c.score[i], true);
    o += 4;
    buf[o++] = c.interpretable[i] ? 1 : 0;
    buf[o++] = c.dead[i] ? 1 : 0;
    const topCount = c.topConceptCount[i];
    o = writeVarint(buf, o, topCount);
    for (const end = tc + topCount; tc < end; tc++) o = copyString(buf, o, encoded, c.topConcepts[tc]);
    const scoreCount = c.topScoreCount[i];
    o = writeVarint(buf, o, scoreCount);
    for (const end = ts + scoreCount; ts < end; ts++, o += 4)
      view.setFloat32(o, c.topScores[ts] ?? Number.NaN, true);
    view.setFloat32(o, c.x[i] ?? 0, true);
    view.setFloat32(o + 4, c.y[i] ?? 0, true);
    view.setUint32(o + 8, t.time, true);
    view.setUint32(o + 12, timeMsLow, true);
    view.setUint32(o + 16, timeMsHigh, true);
    o += 20;
    const images = imageCount ? imageCount[i] : 0;
    o = writeVarint(buf, o, images);
    for (const end = ti + images; ti < end; ti++, o += 4) view.setUint32(o, imageIndex(imageList, ti), true);
    if (previous) o = copyString(buf, o, encoded, previous[i]);
    else buf[o++] = 0;
  }
  if (o !== size) throw new Error(`RowBinary sizing error: wrote ${o} of ${size} bytes`); // a bug here, never data
  return buf;
}
