import { changeTokenSql } from '@cm/queries';
import type { Store } from '@cm/store';

/**
 * The live channel: while at least one page listens, the store is asked every `intervalMs` what
 * changed (rows and newest write per table, one cheap query); a different answer is pushed to every
 * listener, which refetches its view. 500 ms polling keeps "a checkpoint shows within 2 s".
 */
export interface ChangeFeed {
  subscribe(listener: (event: LiveEvent) => void): () => void;
  close(): void;
}

export type LiveEvent = { kind: 'change'; token: string } | { kind: 'unavailable'; error: string };

export function createChangeFeed(store: Store, intervalMs = 500): ChangeFeed {
  const listeners = new Set<(event: LiveEvent) => void>();
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  let polling = false;
  let closed = false;
  const emit = (e: LiveEvent): void => {
    for (const l of listeners) l(e);
  };
  const poll = async (): Promise<void> => {
    if (polling || closed) return;
    polling = true;
    try {
      const rows = await store.query<{ t: string; n: string; last_ms: string }>(changeTokenSql());
      const token = rows
        .map((r) => `${r.t}:${r.n}:${r.last_ms}`)
        .sort()
        .join('|');
      if (token !== last) {
        last = token;
        emit({ kind: 'change', token });
      }
    } catch (e) {
      last = undefined;
      emit({ kind: 'unavailable', error: e instanceof Error ? e.message : String(e) });
    } finally {
      polling = false;
    }
  };
  const schedule = (): void => {
    if (timer || closed) return;
    timer = setInterval(() => void poll(), intervalMs);
    timer.unref();
  };
  return {
    subscribe(listener) {
      listeners.add(listener);
      schedule();
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0 && timer) {
          clearInterval(timer);
          timer = undefined;
          last = undefined;
        }
      };
    },
    close() {
      closed = true;
      if (timer) clearInterval(timer);
      timer = undefined;
      listeners.clear();
    },
  };
}
