import type { Task } from './tasks';
import { runTask } from './tasks';

/** Where dissection tasks run: the calling thread (InlineExecutor) or a DissectPool's workers. */
export interface Executor {
  /** How many tasks run at once; a phase of work is split into this many ranges. */
  readonly size: number;
  /** Run the tasks (each on one worker, in any order) and resolve when all are done. */
  run(tasks: readonly Task[]): Promise<void>;
}

/**
 * Runs tasks one after another in the calling thread, with plain loops instead of onnxruntime
 * (see DenseEngine in tasks.ts): for small inputs and for tests. The SIMD likelihood kernel is the same.
 */
export class InlineExecutor implements Executor {
  readonly size = 1;
  async run(tasks: readonly Task[]): Promise<void> {
    for (const t of tasks) await runTask(t, 0, 'loops');
  }
}

export const inlineExecutor = new InlineExecutor();

/** Split [0, n) into at most `parts` contiguous ranges whose starts are multiples of `align`. */
export function splitRange(n: number, parts: number, align = 1): Array<[number, number]> {
  const units = Math.ceil(n / align);
  const count = Math.max(1, Math.min(parts, units));
  const out: Array<[number, number]> = [];
  for (let p = 0; p < count; p++) {
    const start = Math.min(n, Math.floor((units * p) / count) * align);
    const end = Math.min(n, Math.floor((units * (p + 1)) / count) * align);
    if (end > start) out.push([start, end]);
  }
  return out;
}
