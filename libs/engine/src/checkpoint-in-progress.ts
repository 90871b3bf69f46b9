/**
 * A checkpoint being received: each of its layers is dissected as soon as it is complete (pooled),
 * while the later layers are still arriving, instead of all of them after the checkpoint's end. At
 * reference scale the receive takes seconds during which the dissection workers would otherwise
 * be idle (docs/dissect.md, "Speed").
 *
 * Nothing is decided early: `finish` hands the checkpoint to the engine, which validates it, checks
 * a resend's digest and the step order, and builds the records exactly as for a checkpoint given
 * whole; it only takes each layer's dissection from here when that dissection read the same pooled
 * values from the same starting state (previous top-1) it would have used itself, and dissects
 * anew otherwise (a resend recomputed after a restart). A refused checkpoint (a later layer with a
 * NaN, a missing layer...) is refused with the same status and message; the early dissections are
 * awaited first, so no worker is still busy for it once the refusal is out.
 *
 * Bound: at most `limit` dissections of one checkpoint run at once, the early ones and those
 * `finish` starts itself together, so at most `limit` N x S similarity matrices are alive.
 */
import type { CheckpointData, RunCarry } from '@cm/contracts';
import type { Matrix } from '@cm/dissect';

/** At most `limit` tasks at once, started in the order they asked (first come, first served). */
export class Slots {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Slots limit must be >= 1, got ${limit}`);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the slot is handed over
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** What a CheckpointInProgress needs of its engine (ConceptEngine.beginCheckpoint provides it). */
export interface CheckpointHost<R, P, O> {
  /** The layer as [D, N] pooled values to dissect now, or undefined when it must wait for the end (not pooled, would be refused). */
  dissectable(layer: CheckpointData['layers'][number]): Matrix | undefined;
  /** The run's state the checkpoint would start from if processed now (its previous top-1 per layer). */
  startingState(): RunCarry;
  dissect(layer: string, q: Matrix, previousTop1: Int32Array | undefined): Promise<R>;
  process(cp: CheckpointData, options: O, progress: CheckpointInProgress<R, P, O>): Promise<P>;
}

interface EarlyLayer<R> {
  q: Matrix;
  /** Set when the dissection starts: the state it read previousTop1 from. */
  from?: RunCarry;
  /** undefined when aborted before it started. */
  result: Promise<R | undefined>;
  settled: Promise<void>;
}

export class CheckpointInProgress<R, P, O> {
  private readonly slots: Slots;
  private readonly early = new Map<string, EarlyLayer<R>>();
  private aborted = false;
  private finishing = false;

  /**
   * @param ready resolves once the checkpoints before this one are processed: a layer's dissection
   *   starts after it, from the state they left.
   */
  constructor(
    readonly runId: string,
    readonly step: number,
    private readonly host: CheckpointHost<R, P, O>,
    ready: Promise<unknown>,
    limit: number,
  ) {
    this.slots = new Slots(limit);
    this.ready = ready.then(
      () => undefined,
      () => undefined,
    );
  }

  private readonly ready: Promise<void>;

  /** Layers whose dissection was started early (for tests and logs). */
  get startedLayers(): string[] {
    return [...this.early.keys()];
  }

  /**
   * A layer of the checkpoint is complete: its dissection starts (once the checkpoints before are
   * processed and a slot is free). A layer that cannot be dissected yet is left to `finish`.
   */
  addLayer(layer: CheckpointData['layers'][number]): void {
    if (this.aborted || this.finishing || this.early.has(layer.layer)) return;
    const q = this.host.dissectable(layer);
    if (!q) return;
    const entry: EarlyLayer<R> = { q, result: Promise.resolve(undefined), settled: Promise.resolve() };
    entry.result = this.ready.then(() =>
      this.slots.run(async () => {
        if (this.aborted) return undefined;
        const from = this.host.startingState();
        entry.from = from;
        return this.host.dissect(layer.layer, q, from.top1[layer.layer]);
      }),
    );
    // awaited by finish / abort whatever it gives; its own error reaches whoever uses the result
    entry.settled = entry.result.then(
      () => undefined,
      () => undefined,
    );
    this.early.set(layer.layer, entry);
  }

  /**
   * The checkpoint ended: the engine processes it (validation, resend and step checks, records) with
   * the early dissections; resolves once all of them are over, whatever the outcome.
   */
  async finish(cp: CheckpointData, options: O): Promise<P> {
    this.finishing = true;
    try {
      return await this.host.process(cp, options, this);
    } finally {
      this.aborted = true; // what has not started is not needed any more (a refused checkpoint)
      await this.settled();
    }
  }

  /** The checkpoint will not be processed: start nothing more, resolve once what runs is over. */
  async abort(): Promise<void> {
    if (!this.finishing) this.aborted = true;
    await this.settled();
  }

  /**
   * For the engine: a layer's dissection, taken from the early one when it read these pooled values
   * from `from`, else computed by `dissect` (within this checkpoint's slots).
   */
  async dissection(layer: string, q: Matrix, from: RunCarry, dissect: () => Promise<R>): Promise<R> {
    const e = this.early.get(layer);
    if (e && e.q.data === q.data) {
      const r = await e.result;
      if (r !== undefined && e.from === from) return r;
    }
    return this.slots.run(dissect);
  }

  private async settled(): Promise<void> {
    await Promise.all([...this.early.values()].map((e) => e.settled));
  }
}
