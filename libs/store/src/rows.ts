import { TABLES, type CmRecord } from '@cm/contracts';
import { invalidArgument } from '@cm/core';

/**
 * Records -> table rows (the functional core of the store). Rows are plain objects written with
 * JSONEachRow, so no value from a trainer is ever spliced into SQL.
 *
 * Encodings that work on every server we support (18.16 .. 26):
 *  - times: DateTime as unix seconds (no time zone ambiguity, no DateTime64 on 18.16) plus
 *    `time_ms` (UInt64) which is also the ReplacingMergeTree version;
 *  - maps (tags, metrics, category shares): Nested pairs of arrays (no Map type on 18.16);
 *  - booleans: UInt8 0/1;
 *  - non-finite floats: the strings 'nan' / 'inf' / '-inf', which every version parses into a
 *    Float column (JSON itself has no NaN, and a diverging loss is exactly when you want it stored).
 * Every column is always present: 18.16 does not fill DEFAULTs for fields omitted in JSONEachRow.
 */
export type Row = Record<string, string | number | (string | number)[]>;

export interface TableRows {
  runs: Row[];
  checkpoints: Row[];
  neuronLabels: Row[];
  layerMetrics: Row[];
  alerts: Row[];
}

export const TABLE_OF: Record<keyof TableRows, string> = {
  runs: TABLES.runs,
  checkpoints: TABLES.checkpoints,
  neuronLabels: TABLES.neuronLabels,
  layerMetrics: TABLES.layerMetrics,
  alerts: TABLES.alerts,
};

export function emptyRows(): TableRows {
  return { runs: [], checkpoints: [], neuronLabels: [], layerMetrics: [], alerts: [] };
}

const UINT32_MAX = 0xffffffff;

/** A float for JSONEachRow: finite numbers as they are, NaN and infinities as ClickHouse spells them. */
export function float(v: number): number | string {
  if (Number.isFinite(v)) return v;
  if (Number.isNaN(v) || typeof v !== 'number') return 'nan';
  return v > 0 ? 'inf' : '-inf';
}

function uint32(v: number, what: string, record: CmRecord): number {
  if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) {
    throw invalidArgument(`${what} must be an integer in 0..${UINT32_MAX}, got ${v}`, { kind: record.kind, runId: record.runId, [what]: v });
  }
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

/** Append the rows of one record; throws CmError('INVALID_ARGUMENT') for a value no column can hold. */
export function appendRows(out: TableRows, record: CmRecord): void {
  const t = times(record.time, record);
  switch (record.kind) {
    case 'run': {
      const tags = Object.entries(record.tags ?? {});
      out.runs.push({
        run_id: record.runId,
        model: record.model ?? '',
        paradigm: record.paradigm ?? '',
        bundle_id: record.bundleId,
        'layers.name': record.layers.map((l) => String(l.name)),
        'layers.width': record.layers.map((l) => uint32(l.width, 'layer width', record)),
        'tags.key': tags.map(([k]) => k),
        'tags.value': tags.map(([, v]) => String(v)),
        status: record.status,
        started_at: seconds(record.startedAt),
        ended_at: seconds(record.endedAt),
        ...t,
      });
      return;
    }
    case 'checkpoint': {
      const metrics = Object.entries(record.metrics);
      out.checkpoints.push({
        run_id: record.runId,
        step: uint32(record.step, 'step', record),
        'metrics.name': metrics.map(([k]) => k),
        'metrics.value': metrics.map(([, v]) => float(Number(v))),
        ...t,
      });
      return;
    }
    case 'labels': {
      const step = uint32(record.step, 'step', record);
      for (const l of record.labels) {
        out.neuronLabels.push({
          run_id: record.runId,
          layer: record.layer,
          step,
          neuron: uint32(l.neuron, 'neuron', record),
          concept: l.concept,
          category: l.category ?? '',
          score: float(l.score),
          interpretable: l.interpretable ? 1 : 0,
          dead: l.dead ? 1 : 0,
          top_concepts: l.topConcepts ?? [],
          top_scores: (l.topScores ?? []).map(float),
          x: float(l.x ?? 0),
          y: float(l.y ?? 0),
          ...t,
        });
      }
      return;
    }
    case 'snapshot': {
      const shares = Object.entries(record.categoryShares ?? {});
      const top = record.topConcepts ?? [];
      out.layerMetrics.push({
        run_id: record.runId,
        layer: record.layer,
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
        'top_concepts.concept': top.map((c) => c.concept),
        'top_concepts.count': top.map((c) => uint32(c.count, 'top concept count', record)),
        ...t,
      });
      return;
    }
    case 'alert': {
      out.alerts.push({
        alert_id: record.alertId,
        run_id: record.runId,
        layer: record.layer ?? '',
        step: uint32(record.step, 'step', record),
        rule: record.rule,
        state: record.state,
        severity: record.severity ?? 'warning',
        value: float(record.value),
        threshold: float(record.threshold),
        message: record.message ?? '',
        ...t,
      });
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
  return rows.runs.length + rows.checkpoints.length + rows.neuronLabels.length + rows.layerMetrics.length + rows.alerts.length;
}
