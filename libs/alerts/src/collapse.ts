import { CmError, invalidArgument } from '@cm/core';
import type { AlertRecord, CollapseLayerState, CollapseRunState, LayerSnapshotRecord } from '@cm/contracts';

/**
 * Concept-collapse detection: a pure state machine fed one layer snapshot at a time.
 *
 * Every rule yields, per snapshot, a "condition" (true = looks collapsed) plus the value it saw and
 * the threshold it compared against. Hysteresis turns conditions into episodes: a rule fires after
 * its condition held for `hysteresis` consecutive snapshots of that (run, layer), and resolves after
 * it was clear for `hysteresis` consecutive snapshots. An episode therefore yields exactly two
 * records, one `firing` and one `resolved`, sharing one alertId; a value wobbling around the
 * threshold inside an episode yields nothing.
 */

export type CollapseRule =
  'diversity_drop' | 'diversity_floor' | 'concept_dominance' | 'interpretable_vanish' | 'dead_neurons';

export const COLLAPSE_RULES: readonly CollapseRule[] = [
  'diversity_drop',
  'diversity_floor',
  'concept_dominance',
  'interpretable_vanish',
  'dead_neurons',
];

export interface CollapseRulesConfig {
  /** `diversity_drop` fires when the distinct-concept share is below ratio x its recent median. */
  diversityDropRatio: number;
  /** `diversity_floor` fires when the distinct-concept share is below this. */
  diversityFloor: number;
  /** `concept_dominance` fires when the top concept holds more than this share of the neurons. */
  dominanceShare: number;
  /** `interpretable_vanish` fires when the interpretable share is below ratio x its recent median. */
  interpretableVanishRatio: number;
  /** `dead_neurons` fires when more than this share of the neurons never activate. */
  deadShare: number;
  /** Snapshots of recent history the relative rules compare against. */
  window: number;
  /** Consecutive snapshots a condition must hold (clear) before firing (resolving). */
  hysteresis: number;
  /**
   * A layer whose recent median interpretable share is below this never fires
   * `interpretable_vanish`: there was nothing to vanish.
   */
  minInterpretableBaseline: number;
}

/** The subset of `CmConfig['alerts']` the rules read (kept structural so tests need no full config). */
export interface AlertSettings {
  diversityDropRatio: number;
  diversityFloor: number;
  dominanceShare: number;
  interpretableVanishRatio: number;
  deadShare: number;
  window: number;
  hysteresis: number;
}

export const DEFAULT_MIN_INTERPRETABLE_BASELINE = 0.1;

export function rulesFromConfig(alerts: AlertSettings): CollapseRulesConfig {
  const rules: CollapseRulesConfig = {
    diversityDropRatio: alerts.diversityDropRatio,
    diversityFloor: alerts.diversityFloor,
    dominanceShare: alerts.dominanceShare,
    interpretableVanishRatio: alerts.interpretableVanishRatio,
    deadShare: alerts.deadShare,
    window: alerts.window,
    hysteresis: alerts.hysteresis,
    minInterpretableBaseline: DEFAULT_MIN_INTERPRETABLE_BASELINE,
  };
  validateRules(rules);
  return rules;
}

function validateRules(rules: CollapseRulesConfig): void {
  const fractions: (keyof CollapseRulesConfig)[] = [
    'diversityDropRatio',
    'diversityFloor',
    'dominanceShare',
    'interpretableVanishRatio',
    'deadShare',
    'minInterpretableBaseline',
  ];
  for (const key of fractions) {
    const v = rules[key];
    if (!Number.isFinite(v) || v < 0 || v > 1) {
      throw invalidArgument(`collapse rule setting ${key} must be in [0, 1], got ${v}`, { key, value: v });
    }
  }
  for (const key of ['window', 'hysteresis'] as const) {
    const v = rules[key];
    if (!Number.isInteger(v) || v < 1) {
      throw invalidArgument(`collapse rule setting ${key} must be a positive integer, got ${v}`, {
        key,
        value: v,
      });
    }
  }
}

/** What one rule saw on one snapshot. `undefined` from an evaluator = not enough history yet. */
interface Observation {
  condition: boolean;
  value: number;
  threshold: number;
}

interface RuleState {
  firing: boolean;
  /** Consecutive snapshots the condition has held (while quiet) or been clear (while firing). */
  streak: number;
  alertId?: string;
}

interface LayerState {
  lastStep: number;
  /** Recent values seen while the matching relative rule was quiet (see `baselineFor`). */
  diversityHistory: number[];
  interpretableHistory: number[];
  rules: Map<CollapseRule, RuleState>;
}

const SEVERITY: Record<CollapseRule, AlertRecord['severity']> = {
  diversity_drop: 'warning',
  diversity_floor: 'critical',
  concept_dominance: 'critical',
  interpretable_vanish: 'warning',
  dead_neurons: 'warning',
};

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3));

export class CollapseDetector {
  private readonly rules: CollapseRulesConfig;
  private readonly layers = new Map<string, LayerState>();

  constructor(rules: CollapseRulesConfig) {
    validateRules(rules);
    this.rules = { ...rules };
  }

  /**
   * Feed one snapshot; returns the alerts it starts or ends (usually none). Snapshots of a
   * (run, layer) must come in increasing step order; a step at or before the last one seen is a
   * redelivery and is ignored, so replays never duplicate alerts.
   */
  observe(snapshot: LayerSnapshotRecord): AlertRecord[] {
    if (!Number.isInteger(snapshot.step) || snapshot.step < 0) {
      throw invalidArgument(`snapshot step must be a non-negative integer, got ${snapshot.step}`, {
        runId: snapshot.runId,
        layer: snapshot.layer,
      });
    }
    const key = JSON.stringify([snapshot.runId, snapshot.layer]);
    let layer = this.layers.get(key);
    if (!layer) {
      layer = { lastStep: -1, diversityHistory: [], interpretableHistory: [], rules: new Map() };
      this.layers.set(key, layer);
    }
    if (snapshot.step <= layer.lastStep) return [];
    layer.lastStep = snapshot.step;

    const observations = this.evaluate(snapshot, layer);
    const out: AlertRecord[] = [];
    for (const rule of COLLAPSE_RULES) {
      const obs = observations[rule];
      if (!obs) continue;
      const alert = this.advance(rule, obs, snapshot, layer);
      if (alert) out.push(alert);
    }
    this.remember(snapshot, layer);
    return out;
  }

  /** Drop the state of a finished run (open episodes are forgotten without a resolution). */
  forgetRun(runId: string): void {
    for (const key of [...this.layers.keys()]) {
      if ((JSON.parse(key) as [string, string])[0] === runId) this.layers.delete(key);
    }
  }

  /**
   * The state of one run (history, hysteresis streaks, open episodes per layer) as plain JSON-able
   * data, so a restarted or other service instance can carry the run on with `importState`: same
   * alerts, an open episode neither fired twice nor left unresolved.
   */
  exportState(runId: string): CollapseRunState {
    const out: CollapseRunState = {};
    for (const [key, layer] of this.layers) {
      const [run, name] = JSON.parse(key) as [string, string];
      if (run !== runId) continue;
      const rules: CollapseLayerState['rules'] = {};
      for (const [rule, st] of layer.rules) {
        rules[rule] =
          st.alertId === undefined
            ? { firing: st.firing, streak: st.streak }
            : { firing: st.firing, streak: st.streak, alertId: st.alertId };
      }
      out[name] = {
        lastStep: layer.lastStep,
        diversityHistory: [...layer.diversityHistory],
        interpretableHistory: [...layer.interpretableHistory],
        rules,
      };
    }
    return out;
  }

  /**
   * Replace the state of a run with one from `exportState` (validated: data read back from a store
   * may be corrupt or from another version). Other runs are untouched.
   */
  importState(runId: string, state: CollapseRunState): void {
    const imported = new Map<string, LayerState>();
    const bad = (what: string): never => {
      throw new CmError('CORRUPT', `collapse detector state of run ${runId}: ${what}`, {
        context: { runId },
        hint: "the stored run state is damaged or from an incompatible version; delete it to restart the run's alert history",
      });
    };
    if (typeof state !== 'object' || state === null || Array.isArray(state)) bad('not an object');
    for (const [name, layer] of Object.entries(state)) {
      if (typeof layer !== 'object' || layer === null) bad(`layer ${name} is not an object`);
      if (!Number.isInteger(layer.lastStep) || layer.lastStep < -1)
        bad(`layer ${name}: lastStep ${String(layer.lastStep)} is not an integer >= -1`);
      const history = (h: unknown, field: string): number[] => {
        if (!Array.isArray(h) || !h.every((v) => typeof v === 'number' && Number.isFinite(v)))
          bad(`layer ${name}: ${field} must be finite numbers`);
        // the window may have been configured smaller since the state was saved: keep the latest
        return (h as number[]).slice(-this.rules.window);
      };
      const rules = new Map<CollapseRule, RuleState>();
      if (typeof layer.rules !== 'object' || layer.rules === null)
        bad(`layer ${name}: rules is not an object`);
      for (const [rule, st] of Object.entries(layer.rules)) {
        if (!(COLLAPSE_RULES as readonly string[]).includes(rule)) bad(`layer ${name}: unknown rule ${rule}`);
        if (typeof st?.firing !== 'boolean' || !Number.isInteger(st.streak) || st.streak < 0)
          bad(`layer ${name} rule ${rule}: firing/streak malformed`);
        if (st.firing !== (typeof st.alertId === 'string'))
          bad(`layer ${name} rule ${rule}: a firing rule needs its alertId, a quiet one has none`);
        rules.set(
          rule as CollapseRule,
          st.firing
            ? { firing: true, streak: st.streak, alertId: st.alertId }
            : { firing: false, streak: st.streak },
        );
      }
      imported.set(JSON.stringify([runId, name]), {
        lastStep: layer.lastStep,
        diversityHistory: history(layer.diversityHistory, 'diversityHistory'),
        interpretableHistory: history(layer.interpretableHistory, 'interpretableHistory'),
        rules,
      });
    }
    this.forgetRun(runId);
    for (const [key, layer] of imported) this.layers.set(key, layer);
  }

  /** Rules currently firing for a (run, layer), for status views. */
  firing(runId: string, layer: string): CollapseRule[] {
    const state = this.layers.get(JSON.stringify([runId, layer]));
    if (!state) return [];
    return COLLAPSE_RULES.filter((r) => state.rules.get(r)?.firing);
  }

  private evaluate(s: LayerSnapshotRecord, layer: LayerState): Partial<Record<CollapseRule, Observation>> {
    const r = this.rules;
    const out: Partial<Record<CollapseRule, Observation>> = {};
    const diversity = s.distinctConceptShare;
    out.diversity_floor = {
      condition: diversity < r.diversityFloor,
      value: diversity,
      threshold: r.diversityFloor,
    };
    if (layer.diversityHistory.length >= r.window) {
      const threshold = r.diversityDropRatio * median(layer.diversityHistory);
      out.diversity_drop = { condition: diversity < threshold, value: diversity, threshold };
    }
    const top = s.topConcepts[0];
    const share = top && s.neurons > 0 ? top.count / s.neurons : 0;
    out.concept_dominance = {
      condition: share > r.dominanceShare,
      value: share,
      threshold: r.dominanceShare,
    };
    if (layer.interpretableHistory.length >= r.window) {
      const baseline = median(layer.interpretableHistory);
      const threshold = r.interpretableVanishRatio * baseline;
      out.interpretable_vanish = {
        condition: baseline >= r.minInterpretableBaseline && s.interpretableFraction < threshold,
        value: s.interpretableFraction,
        threshold,
      };
    }
    out.dead_neurons = {
      condition: s.deadFraction > r.deadShare,
      value: s.deadFraction,
      threshold: r.deadShare,
    };
    return out;
  }

  /**
   * Keep recent history for the relative rules, but only values seen while that rule is quiet and
   * its condition clear: otherwise a collapse would become its own baseline within `window`
   * snapshots and "resolve" while the layer is still collapsed.
   */
  private remember(s: LayerSnapshotRecord, layer: LayerState): void {
    const push = (history: number[], value: number): void => {
      history.push(value);
      if (history.length > this.rules.window) history.shift();
    };
    if (this.quiet(layer, 'diversity_drop')) push(layer.diversityHistory, s.distinctConceptShare);
    if (this.quiet(layer, 'interpretable_vanish')) push(layer.interpretableHistory, s.interpretableFraction);
  }

  private quiet(layer: LayerState, rule: CollapseRule): boolean {
    const st = layer.rules.get(rule);
    return !st || (!st.firing && st.streak === 0);
  }

  private advance(
    rule: CollapseRule,
    obs: Observation,
    s: LayerSnapshotRecord,
    layer: LayerState,
  ): AlertRecord | undefined {
    let st = layer.rules.get(rule);
    if (!st) {
      st = { firing: false, streak: 0 };
      layer.rules.set(rule, st);
    }
    if (!st.firing) {
      st.streak = obs.condition ? st.streak + 1 : 0;
      if (st.streak < this.rules.hysteresis) return undefined;
      st.firing = true;
      st.streak = 0;
      st.alertId = alertIdFor(s.runId, s.layer, rule, s.step);
      return this.record(rule, 'firing', st.alertId, obs, s);
    }
    st.streak = obs.condition ? 0 : st.streak + 1;
    if (st.streak < this.rules.hysteresis) return undefined;
    const alertId = st.alertId as string;
    st.firing = false;
    st.streak = 0;
    st.alertId = undefined;
    return this.record(rule, 'resolved', alertId, obs, s);
  }

  private record(
    rule: CollapseRule,
    state: AlertRecord['state'],
    alertId: string,
    obs: Observation,
    s: LayerSnapshotRecord,
  ): AlertRecord {
    return {
      kind: 'alert',
      alertId,
      runId: s.runId,
      layer: s.layer,
      step: s.step,
      rule,
      state,
      severity: SEVERITY[rule],
      value: obs.value,
      threshold: obs.threshold,
      message: describe(rule, state, obs, s),
      time: s.time,
    };
  }
}

/** Stable, readable episode id: the same replayed stream yields the same ids (idempotent stores). */
export function alertIdFor(runId: string, layer: string, rule: CollapseRule, firedAtStep: number): string {
  return `${runId}/${layer}/${rule}/${firedAtStep}`;
}

function describe(
  rule: CollapseRule,
  state: AlertRecord['state'],
  obs: Observation,
  s: LayerSnapshotRecord,
): string {
  const where = `run ${s.runId} layer ${s.layer} step ${s.step}`;
  const v = fmt(obs.value);
  const t = fmt(obs.threshold);
  const top = s.topConcepts[0]?.concept ?? '-';
  const what: Record<CollapseRule, string> = {
    diversity_drop: `distinct-concept share ${v} vs ${t} (a fraction of its recent median)`,
    diversity_floor: `distinct-concept share ${v} vs floor ${t}`,
    concept_dominance: `concept "${top}" holds ${v} of the neurons vs limit ${t}`,
    interpretable_vanish: `interpretable share ${v} vs ${t} (a fraction of its recent median)`,
    dead_neurons: `dead-neuron share ${v} vs limit ${t}`,
  };
  return state === 'firing'
    ? `concept collapse (${rule}) on ${where}: ${what[rule]}`
    : `resolved (${rule}) on ${where}: ${what[rule]}`;
}

/** One terminal line for an alert (the trainer's live view prints these). */
export function formatAlert(a: AlertRecord): string {
  const mark = a.state === 'firing' ? (a.severity === 'critical' ? 'CRIT' : 'WARN') : 'OK  ';
  return `${mark} ${a.message}`;
}
