import { parentPort } from 'node:worker_threads';
import { isCmError } from '@cm/core';
import { runTask, type Task } from './tasks';

/** Worker thread of a DissectPool: runs one task at a time and reports back. */
export interface TaskMessage {
  id: number;
  slot: number;
  task: Task;
}
export type ResultMessage =
  | { id: number; ok: true }
  | {
      id: number;
      ok: false;
      error: {
        code: string;
        message: string;
        context: Record<string, unknown>;
        hint?: string;
        stack?: string;
      };
    };

const port = parentPort;
if (port) {
  port.on('message', (msg: TaskMessage) => {
    runTask(msg.task, msg.slot).then(
      () => port.postMessage({ id: msg.id, ok: true } satisfies ResultMessage),
      (e: unknown) => {
        const err = e as Error;
        port.postMessage({
          id: msg.id,
          ok: false,
          error: {
            code: isCmError(e) ? e.code : 'INTERNAL',
            message: err?.message ?? String(e),
            context: isCmError(e) ? { ...e.context } : {},
            hint: isCmError(e) ? e.hint : undefined,
            stack: err?.stack,
          },
        } satisfies ResultMessage);
      },
    );
  });
}
