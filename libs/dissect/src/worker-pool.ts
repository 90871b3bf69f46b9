import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { CmError, startTsWorker, type CmErrorCode } from '@cm/core';
import type { Executor } from './executor';
import type { Task } from './tasks';
import type { ResultMessage, TaskMessage } from './worker';

interface Pending {
  task: Task;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  index: number;
  busy: Pending | undefined;
  id: number;
}

export interface WorkerPoolOptions {
  /** Worker threads (default: one per core). */
  workers?: number;
  /** Let the process exit while the pool is idle (the default pool of computeSimilarity does). */
  unrefWhenIdle?: boolean;
}

/**
 * Worker threads that run dissection tasks off the calling thread: an Executor and nothing else.
 * Big arrays are shared (SharedArrayBuffer / shared WebAssembly memory), not copied per message.
 * One pool serves any number of concurrent dissections; tasks queue until a worker is free.
 * (DissectPool, in pool.ts, adds the dissection calls on top; this module imports none of them,
 * so the similarity, dissect and calibrate modules can use the default pool without a circle.)
 */
export class WorkerPool implements Executor {
  readonly size: number;
  private readonly slots: Slot[];
  private readonly queue: Pending[] = [];
  private readonly unrefWhenIdle: boolean;
  private closed = false;
  private nextId = 1;

  constructor(options: WorkerPoolOptions = {}) {
    const n = options.workers ?? availableParallelism();
    if (!Number.isInteger(n) || n < 1 || n > 64) {
      throw new CmError(
        'INVALID_ARGUMENT',
        `dissection pool: workers must be an integer in 1..64, got ${n}`,
        {
          context: { workers: n },
        },
      );
    }
    this.size = n;
    this.unrefWhenIdle = options.unrefWhenIdle ?? false;
    this.slots = Array.from({ length: n }, (_, index) => this.startSlot(index));
  }

  private startSlot(index: number): Slot {
    const worker = startTsWorker(join(__dirname, 'worker.ts'));
    const slot: Slot = { worker, index, busy: undefined, id: 0 };
    worker.on('message', (msg: ResultMessage) => {
      const job = slot.busy;
      if (!job || msg.id !== slot.id) return;
      slot.busy = undefined;
      if (msg.ok) job.resolve();
      else {
        const e = new CmError(msg.error.code as CmErrorCode, msg.error.message, {
          context: msg.error.context,
          hint: msg.error.hint,
        });
        if (msg.error.stack) e.stack = msg.error.stack;
        job.reject(e);
      }
      this.pump();
    });
    worker.on('error', (err) => this.failSlot(slot, err));
    worker.on('exit', (code) => {
      if (!this.closed) this.failSlot(slot, new Error(`dissect worker ${index} exited with code ${code}`));
    });
    if (this.unrefWhenIdle) worker.unref();
    return slot;
  }

  private failSlot(slot: Slot, err: Error): void {
    const job = slot.busy;
    slot.busy = undefined;
    job?.reject(
      new CmError('INTERNAL', `dissect worker ${slot.index} failed: ${err.message}`, { cause: err }),
    );
    if (this.closed) return;
    void slot.worker.terminate();
    this.slots[slot.index] = this.startSlot(slot.index);
    this.pump();
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.busy) continue;
      const job = this.queue.shift();
      if (!job) break;
      slot.busy = job;
      slot.id = this.nextId++;
      if (this.unrefWhenIdle) slot.worker.ref();
      slot.worker.postMessage({ id: slot.id, slot: slot.index, task: job.task } satisfies TaskMessage);
    }
    if (this.unrefWhenIdle) for (const slot of this.slots) if (!slot.busy) slot.worker.unref();
  }

  run(tasks: readonly Task[]): Promise<void> {
    if (this.closed) return Promise.reject(new CmError('UNAVAILABLE', 'the dissection pool is closed'));
    const done = tasks.map(
      (task) =>
        new Promise<void>((resolve, reject) => {
          this.queue.push({ task, resolve, reject });
        }),
    );
    this.pump();
    return Promise.all(done).then(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const job of this.queue.splice(0))
      job.reject(new CmError('UNAVAILABLE', 'the dissection pool closed'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
