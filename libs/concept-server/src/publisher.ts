/** The concept service's RecordSink: JetStream through @cm/bus (PubAck awaited, Nats-Msg-Id set there). */
import type { CmRecord } from '@cm/contracts';
import type { RecordSink } from '@cm/engine';

/** What the service needs of a bus (Bus from @cm/bus fits). */
export interface RecordPublisher {
  publishRecords(records: CmRecord[]): Promise<unknown>;
}

export function busSink(bus: RecordPublisher): RecordSink {
  return {
    async write(records) {
      if (records.length > 0) await bus.publishRecords(records);
    },
  };
}
