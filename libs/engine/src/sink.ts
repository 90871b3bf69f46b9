/**
 * Where the engine's records go. The concept service's sink publishes to JetStream (apps/
 * concept-service); the all-in-one monitor's sink inserts into a store (chDB). A sink's `write`
 * resolves only once the records are durable: that is when a checkpoint is acknowledged.
 */
import type { CmRecord } from '@cm/contracts';

export interface RecordSink {
  write(records: CmRecord[]): Promise<void>;
}

/** What the engine needs of a store (Store from @cm/store fits). */
export interface RecordStore {
  insertRecords(records: CmRecord[]): Promise<unknown>;
}

export function storeSink(store: RecordStore): RecordSink {
  return {
    async write(records) {
      if (records.length > 0) await store.insertRecords(records);
    },
  };
}

/** Keeps every record in memory (tests, dry runs). */
export class MemorySink implements RecordSink {
  readonly records: CmRecord[] = [];
  async write(records: CmRecord[]): Promise<void> {
    this.records.push(...records);
  }
}
