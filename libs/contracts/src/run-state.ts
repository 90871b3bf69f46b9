/**
 * Per-run state of the concept service that must outlive a process: what the engine needs to carry
 * a run on after a restart, or on another replica (label switches need the previous top-1 concept
 * of every neuron; the collapse detector needs its history and open episodes). The engine keeps it
 * in memory and saves it through a RunStateStore after every checkpoint; the service's store is a
 * JetStream key-value bucket (@cm/bus), all-in-one mode keeps it in memory (@cm/engine).
 */
import type { RunRecord } from './records';
import type { RunSpec } from './monitor';

/** One collapse rule's hysteresis state on one (run, layer). */
export interface CollapseRuleState {
  firing: boolean;
  /** Consecutive snapshots the condition has held (while quiet) or been clear (while firing). */
  streak: number;
  /** The open episode's id while firing. */
  alertId?: string;
}

/** The collapse detector's state of one (run, layer). */
export interface CollapseLayerState {
  lastStep: number;
  diversityHistory: number[];
  interpretableHistory: number[];
  /** By rule name (`diversity_drop`, `concept_dominance`, ...). */
  rules: Record<string, CollapseRuleState>;
}

/** The collapse detector's state of one run, by layer. */
export type CollapseRunState = Record<string, CollapseLayerState>;

/** What carries over from one checkpoint of a run to the next. */
export interface RunCarry {
  /** Top-1 concept index of every neuron at the last processed checkpoint, by layer. */
  top1: Record<string, Int32Array>;
  /** Absent when the engine's detector cannot export its state (test doubles). */
  detector?: CollapseRunState;
}

export interface PersistedRunState {
  spec: RunSpec;
  /** The run record as first written (startedAt), so a resumed run ends with the same record. */
  record: RunRecord;
  /** Last processed step, -1 before the first checkpoint. */
  lastStep: number;
  /** State after `lastStep`. */
  current: RunCarry;
  /**
   * The most recent processed steps, oldest first, each with the state before it: a checkpoint
   * resent after a restart (processed, never acknowledged) is recomputed from there, identically.
   */
  recent: { step: number; before: RunCarry }[];
  /**
   * The start token of the client that started the run (RunStart.start_token): a RunStart repeated
   * by that client after a lost answer is the same start, not a second run under the same id.
   */
  startToken?: string;
  /**
   * Set once the run ended: the state then only says the id is taken (its carry is dropped), so a
   * new run under the same id is refused unless it asks to resume.
   */
  ended?: boolean;
}
