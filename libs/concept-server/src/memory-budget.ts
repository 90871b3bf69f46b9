/**
 * One memory bound shared by every stream of a concept server (CM_SERVICE_MAX_BUFFERED_BYTES): the
 * bytes of activations being assembled, and of received checkpoints not yet dissected and
 * published. A stream whose next layer does not fit waits (it pauses reading, so HTTP/2 flow
 * control holds its trainer) and is granted room, first come first served, as others release it.
 *
 * Deadlock guard: memory of a checkpoint still being assembled comes back only once the whole
 * checkpoint is received and processed (`settle` marks it received). If all memory held belongs to
 * checkpoints half received by streams that are themselves waiting for more, nobody would release
 * anything; then the oldest waiter is granted past the bound and the grant is counted in
 * `overcommits`. Sessions reserve a checkpoint's expected size at its first layer, so this happens
 * only when a checkpoint turns out larger than expected (unpooled layers).
 */
export interface MemoryBudgetStats {
  limit: number;
  used: number;
  /** Highest `used` seen. */
  peak: number;
  waiting: number;
  overcommits: number;
}

interface Waiter {
  owner: object;
  bytes: number;
  grant(): void;
}

export class MemoryBudget {
  private usedBytes = 0;
  private peakBytes = 0;
  private overcommitCount = 0;
  private readonly held = new Map<object, number>();
  /** Of `held`, the bytes of checkpoints still being received (not yet sure to come back). */
  private readonly assembling = new Map<object, number>();
  private waiters: Waiter[] = [];

  constructor(readonly limit: number) {}

  stats(): MemoryBudgetStats {
    return {
      limit: this.limit,
      used: this.usedBytes,
      peak: this.peakBytes,
      waiting: this.waiters.length,
      overcommits: this.overcommitCount,
    };
  }

  /** Take `bytes` now if they fit and nobody waits before; false otherwise (then call wait). */
  tryTake(owner: object, bytes: number): boolean {
    if (this.waiters.length > 0 || this.usedBytes + bytes > this.limit) return false;
    this.add(owner, bytes);
    return true;
  }

  /** `bytes` of what `owner` holds belong to a checkpoint now fully received: they will come back. */
  settle(owner: object, bytes: number): void {
    const left = (this.assembling.get(owner) ?? 0) - bytes;
    if (left > 0) this.assembling.set(owner, left);
    else this.assembling.delete(owner);
    this.grantWaiting();
  }

  /** Queue for `bytes`; `grant` is called (asynchronously) once they are taken for `owner`. */
  wait(owner: object, bytes: number, grant: () => void): void {
    this.waiters.push({ owner, bytes, grant });
    this.grantWaiting();
  }

  release(owner: object, bytes: number): void {
    const held = this.held.get(owner) ?? 0;
    const n = Math.min(held, bytes);
    if (n <= 0) return;
    this.usedBytes -= n;
    if (held - n > 0) this.held.set(owner, held - n);
    else this.held.delete(owner);
    const assembling = Math.min(this.assembling.get(owner) ?? 0, held - n);
    if (assembling > 0) this.assembling.set(owner, assembling);
    else this.assembling.delete(owner);
    this.grantWaiting();
  }

  /** A stream is over: everything it holds comes back, and its place in the queue is dropped. */
  releaseAll(owner: object): void {
    this.waiters = this.waiters.filter((w) => w.owner !== owner);
    this.release(owner, this.held.get(owner) ?? 0);
    this.grantWaiting();
  }

  private add(owner: object, bytes: number): void {
    this.usedBytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.usedBytes);
    this.held.set(owner, (this.held.get(owner) ?? 0) + bytes);
    this.assembling.set(owner, (this.assembling.get(owner) ?? 0) + bytes);
  }

  private grantWaiting(): void {
    while (this.waiters.length > 0) {
      const first = this.waiters[0];
      if (this.usedBytes + first.bytes > this.limit) {
        // Memory comes back from received checkpoints, and from streams still receiving (not waiting).
        const waitingOwners = new Set(this.waiters.map((w) => w.owner));
        let assemblingOfWaiters = 0;
        for (const [o, n] of this.assembling) if (waitingOwners.has(o)) assemblingOfWaiters += n;
        const someoneWillRelease = assemblingOfWaiters < this.usedBytes;
        if (someoneWillRelease || this.usedBytes === 0) return;
        this.overcommitCount++;
      }
      this.waiters.shift();
      this.add(first.owner, first.bytes);
      // asynchronously: a grant resumes another stream, which must not run inside this one's call
      setImmediate(first.grant);
    }
  }
}
