/**
 * The run-state seam: where the engine keeps what a run carries from one checkpoint to the next
 * (PersistedRunState of @cm/contracts), so that a restarted concept service, or another replica the
 * trainer reconnects to, carries the run on: same label switches, same alert episodes. The service
 * uses a JetStream key-value bucket (`openRunStateKv` in @cm/bus); all-in-one mode and tests use
 * `MemoryRunStateStore`.
 */
import type { PersistedRunState } from '@cm/contracts';

export type { PersistedRunState, RunCarry, CollapseRunState } from '@cm/contracts';

export interface RunStateStore {
  /** The saved state of a run, undefined when none is saved (a new run, or an ended one). */
  load(runId: string): Promise<PersistedRunState | undefined>;
  /** Replace the run's state; resolves once it is durable (the engine acks only after that). */
  save(runId: string, state: PersistedRunState): Promise<void>;
  /** Forget a run (ended). Deleting an unknown run is not an error. */
  delete(runId: string): Promise<void>;
}

/** Runs idle this long (no checkpoint, no open stream) are dropped from memory; their state stays in the store. */
export const DEFAULT_RUN_IDLE_MS = 60 * 60 * 1000;

/**
 * Keeps states in this process: all-in-one mode (the engine lives as long as the trainer) and
 * tests. Values are deep copies (structuredClone keeps the Int32Arrays) so that, as with the KV
 * store, what was saved cannot change behind the store's back.
 */
export class MemoryRunStateStore implements RunStateStore {
  private readonly states = new Map<string, PersistedRunState>();
  /** Saves and loads done, for tests. */
  saves = 0;
  loads = 0;

  async load(runId: string): Promise<PersistedRunState | undefined> {
    this.loads++;
    const state = this.states.get(runId);
    return state && structuredClone(state);
  }

  async save(runId: string, state: PersistedRunState): Promise<void> {
    this.saves++;
    this.states.set(runId, structuredClone(state));
  }

  async delete(runId: string): Promise<void> {
    this.states.delete(runId);
  }

  /** Run ids with a saved state. */
  runIds(): string[] {
    return [...this.states.keys()];
  }
}
