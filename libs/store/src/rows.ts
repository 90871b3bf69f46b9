import { TABLES, type CmRecord } from '@cm/contracts';
import { invalidArgument } from '@cm/core';

/**
 * Records -> insert lines per table (the functional core of the store). Rows are data in an
 * insert body, never SQL, so no value from a trainer is spliced into a statement.
 *
 * Most tables get JSONEachRow lines (JSON.stringify of an object). Neuron labels, the hot path
 * (hundreds of thousands of rows per second), are written as TabSeparated with an explicit column
 * list: ClickHouse parses TSV about twice as fast as JSONEachRow and the body is half the size
 * (no repeated keys). No library writes ClickHouse TSV from JS objects, so the two escapers below
 * are hand-written to ClickHouse's rules (TSV field: \\ \t \n \r \0; quoted string inside an
 * array: the same plus \'), and the store tests round-trip hostile strings through both engines.
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

export interface TableRows {
  /**
   * Encoded rows per table, in INSERT_FORMAT's format: chunks of one or more lines joined by '\n'
   * (no trailing newline); a labels record is one chunk.
   */
  lines: Record<TableKey, string[]>;
  /** Rows per table (a chunk may hold many). */
  counts: Record<TableKey, number>;
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
  'run_id', 'layer', 'step', 'neuron', 'concept', 'category', 'score', 'interpretable', 'dead',
  'top_concepts', 'top_scores', 'x', 'y', 'time', 'time_ms',
] as const;
export const INSERT_FORMAT: Record<TableKey, { format: 'JSONEachRow' | 'TabSeparated'; columns?: readonly string[] }> = {
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
const ESCAPES: Record<string, string> = { '\\': '\\\\', "'": "\\'", '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' };
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

export function emptyRows(): TableRows {
  return {
    lines: { runs: [], checkpoints: [], neuronLabels: [], layerMetrics: [], alerts: [] },
    counts: { runs: 0, checkpoints: 0, neuronLabels: 0, layerMetrics: 0, alerts: 0 },
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


function uint32(v: number, what: string, record: CmRecord): number {
  if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) {
    throw invalidArgument(`${what} must be an integer in 0..${UINT32_MAX}, got ${v}`, { kind: record.kind, runId: record.runId, [what]: v });
  }
  return v;
}

function str(v: unknown, what: string, record: CmRecord): string {
  if (typeof v !== 'string') throw invalidArgument(`${what} must be a string`, { kind: record.kind, runId: record.runId });
  return v;
}

function times(iso: string, record: CmRecord): { time: number; time_ms: number } {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms) || ms < 0) throw invalidArgument(`time is not a valid ISO date: ${iso}`, { kind: record.kind, runId: record.runId });
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
export function appendRows(out: TableRows, record: CmRecord): void {
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
      // columns in NEURON_LABEL_COLUMNS order
      const prefix = `${tsvString(record.runId)}\t${tsvString(str(record.layer, 'layer', record))}\t${uint32(record.step, 'step', record)}\t`;
      const suffix = `\t${t.time}\t${t.time_ms}`;
      // concept names repeat (a vocabulary of ~1000): escape each distinct one once
      const escaped = new Map<string, string>();
      const field = (v: unknown, what: string): string => {
        let e = escaped.get(v as string);
        if (e === undefined) escaped.set(str(v, what, record), (e = tsvString(v as string)));
        return e;
      };
      const quotedCache = new Map<string, string>();
      const quotedItem = (v: unknown): string => {
        let e = quotedCache.get(v as string);
        if (e === undefined) quotedCache.set(str(v, 'top concept', record), (e = tsvQuoted(v as string)));
        return e;
      };
      const concepts = new Map<string, string>();
      let chunk = '';
      for (let i = 0; i < record.labels.length; i++) {
        const l = record.labels[i];
        const concept = field(l.concept, 'concept');
        const category = l.category === undefined ? '' : field(l.category, 'category');
        concepts.set(l.concept, l.category ?? '');
        let top = '';
        const topConcepts = l.topConcepts ?? [];
        for (let j = 0; j < topConcepts.length; j++) top += (j ? ',' : '') + quotedItem(topConcepts[j]);
        let scores = '';
        const topScores = l.topScores ?? [];
        for (let j = 0; j < topScores.length; j++) scores += (j ? ',' : '') + floatTsv(topScores[j]);
        chunk +=
          (i ? '\n' : '') +
          prefix +
          uint32(l.neuron, 'neuron', record) +
          '\t' + concept + '\t' + category + '\t' + floatTsv(l.score) +
          (l.interpretable ? '\t1' : '\t0') + (l.dead ? '\t1' : '\t0') +
          '\t[' + top + ']\t[' + scores + ']\t' +
          floatTsv(l.x ?? 0) + '\t' + floatTsv(l.y ?? 0) +
          suffix;
      }
      if (record.labels.length) {
        out.lines.neuronLabels.push(chunk);
        out.counts.neuronLabels += record.labels.length;
      }
      let seen = out.labelConcepts.get(record.runId);
      if (!seen) out.labelConcepts.set(record.runId, (seen = new Map()));
      for (const [c, cat] of concepts) seen.set(c, cat);
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
