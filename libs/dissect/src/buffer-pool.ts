/**
 * SharedArrayBuffers reused by exact byte size (issue 15, docs/dissect.md "Memory").
 *
 * Why a pool and not `new SharedArrayBuffer` per checkpoint: a SharedArrayBuffer handed to a
 * dissection worker (postMessage) stays allocated until every isolate that saw it has garbage-
 * collected its handle, and an idle worker thread allocates next to nothing, so it does not
 * collect for a long time. At reference scale each checkpoint made ~450 MiB of such buffers (the
 * pooled layers, 149 MiB, and the N x S similarity matrices, 298 MiB) that stayed resident after
 * the ack: a gc() in the main thread freed none of it, a gc() in the workers freed it all. Taking
 * the same buffers again for the next checkpoint keeps one checkpoint's worth resident instead of
 * several.
 *
 * Contract: a buffer is the taker's alone from `take` until it `give`s it back; only then can
 * another `take` return it. A taker gives a buffer back only once nothing (no worker task, no
 * record still to be published) reads or writes it. A reused buffer holds its previous contents:
 * takers overwrite every byte they read. A buffer that is never given back is simply collected
 * like any other (a failed checkpoint does not return its buffers). Idle buffers are dropped after
 * `idleMs` and beyond `maxIdleBytes`, so an idle process shrinks back.
 */
import { CmError } from '@cm/core';

export interface SharedBufferPoolOptions {
  /** An idle buffer unused this long is dropped (default 30 s; 0: idle buffers are not kept). */
  idleMs?: number;
  /** Idle bytes kept at most; the longest idle go first (default 4 GiB). */
  maxIdleBytes?: number;
}

interface IdleBuffer {
  buffer: SharedArrayBuffer;
  since: number;
}

export class SharedBufferPool {
  private readonly idleMs: number;
  private readonly maxIdleBytes: number;
  /** Idle buffers by byte size, the most recently given back last. */
  private readonly idle = new Map<number, IdleBuffer[]>();
  /** Buffers taken from this pool and not given back. */
  private readonly taken = new WeakSet<SharedArrayBuffer>();
  private idleTotal = 0;
  private timer?: NodeJS.Timeout;
  /** Takes answered with an idle buffer, and with a new one (for tests and logs). */
  reused = 0;
  allocated = 0;

  constructor(opts: SharedBufferPoolOptions = {}) {
    this.idleMs = opts.idleMs ?? 30_000;
    this.maxIdleBytes = opts.maxIdleBytes ?? 4 * 2 ** 30;
    if (!(this.idleMs >= 0) || !(this.maxIdleBytes >= 0))
      throw new CmError('INVALID_ARGUMENT', 'SharedBufferPool: idleMs and maxIdleBytes must be >= 0', {
        context: { idleMs: this.idleMs, maxIdleBytes: this.maxIdleBytes },
      });
  }

  /** Bytes of the idle buffers held. */
  get idleBytes(): number {
    return this.idleTotal;
  }

  /** A buffer of exactly `bytes` bytes, the caller's until given back (contents: whatever it held). */
  take(bytes: number): SharedArrayBuffer {
    if (!Number.isInteger(bytes) || bytes < 0)
      throw new CmError('INVALID_ARGUMENT', `SharedBufferPool: bad size ${bytes}`, { context: { bytes } });
    const list = this.idle.get(bytes);
    const hit = list?.pop();
    let buffer: SharedArrayBuffer;
    if (hit) {
      if (list!.length === 0) this.idle.delete(bytes);
      this.idleTotal -= bytes;
      buffer = hit.buffer;
      this.reused++;
    } else {
      buffer = new SharedArrayBuffer(bytes);
      this.allocated++;
    }
    this.taken.add(buffer);
    return buffer;
  }

  /**
   * Give a buffer back for a later `take`: only its current taker may. A buffer this pool did not
   * give out, or one given back already and not taken since, is ignored (false). (A holder of a
   * buffer given back and since taken by someone else cannot be told from that taker here: the
   * concept engine therefore releases by view, each take getting a view of its own.)
   */
  give(buffer: SharedArrayBuffer): boolean {
    if (!this.taken.has(buffer)) return false;
    this.taken.delete(buffer);
    if (this.idleMs === 0) return true;
    const bytes = buffer.byteLength;
    let list = this.idle.get(bytes);
    if (!list) this.idle.set(bytes, (list = []));
    list.push({ buffer, since: Date.now() });
    this.idleTotal += bytes;
    this.trim(Date.now());
    this.schedule();
    return true;
  }

  /** Whether `buffer` is out of this pool now (taken, not given back). */
  isTaken(buffer: SharedArrayBuffer): boolean {
    return this.taken.has(buffer);
  }

  /** Drop every idle buffer. */
  clear(): void {
    this.idle.clear();
    this.idleTotal = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Drop buffers idle longer than idleMs, then the longest idle ones beyond maxIdleBytes. */
  private trim(now: number): void {
    for (const [bytes, list] of this.idle) {
      while (list.length > 0 && now - list[0].since >= this.idleMs) {
        list.shift();
        this.idleTotal -= bytes;
      }
      if (list.length === 0) this.idle.delete(bytes);
    }
    while (this.idleTotal > this.maxIdleBytes) {
      let oldest: [number, IdleBuffer[]] | undefined;
      for (const entry of this.idle) if (!oldest || entry[1][0].since < oldest[1][0].since) oldest = entry;
      if (!oldest) break;
      oldest[1].shift();
      this.idleTotal -= oldest[0];
      if (oldest[1].length === 0) this.idle.delete(oldest[0]);
    }
  }

  private schedule(): void {
    if (this.timer || this.idle.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.trim(Date.now());
      this.schedule();
    }, this.idleMs);
    this.timer.unref();
  }
}
