import {
  MAX_MESSAGE_BYTES,
  messageId,
  toLabelsColumnsRecord,
  type CmRecord,
  type LabelsRecord,
} from '@cm/contracts';
import { CmError } from '@cm/core';

/** One message ready to publish: its de-duplication id and its JSON body. */
export interface OutgoingMessage {
  record: CmRecord;
  msgId: string;
  body: Uint8Array;
}

const encoder = new TextEncoder();

/**
 * How a labels record travels: `rows` is the LabelsRecord JSON every consumer reads; `columns` is
 * the compact columnar form (LabelsColumnsRecord, libs/contracts/src/label-columns.ts: a third of
 * the bytes, several times cheaper for the recorder to decode). The recorder accepts both; other
 * record kinds are always plain JSON.
 */
export type LabelEncoding = 'rows' | 'columns';

function encodeRecord(record: CmRecord, labelEncoding: LabelEncoding): Uint8Array {
  return encoder.encode(
    JSON.stringify(
      record.kind === 'labels' && labelEncoding === 'columns' ? toLabelsColumnsRecord(record) : record,
    ),
  );
}

/**
 * The natural key of a record, as a Nats-Msg-Id: the same record sent twice gets the same id, so
 * JetStream drops the resend inside the stream's duplicate window.
 */
export function messageIdFor(record: CmRecord): string {
  switch (record.kind) {
    case 'run':
      // one message per status transition (running -> completed | failed)
      return messageId('run', record.runId, record.status);
    case 'checkpoint':
      return messageId('checkpoint', record.runId, record.step);
    case 'labels': {
      // keyed by the neuron range it carries rather than part/parts: a split is a pure function of
      // the labels, and the store de-duplicates rows by neuron anyway if two splits ever differ.
      const first = record.labels.length ? record.labels[0].neuron : -1;
      const last = record.labels.length ? record.labels[record.labels.length - 1].neuron : -1;
      return messageId('labels', record.runId, record.layer, record.step, first, last);
    }
    case 'snapshot':
      return messageId('snapshot', record.runId, record.layer, record.step);
    case 'alert':
      return messageId('alert', record.runId, record.alertId, record.state);
  }
}

/**
 * Encode records as messages of at most `maxBytes` each. A labels record over the limit is split
 * into consecutive neuron ranges; its part/parts are renumbered (part * k + i of parts * k) so they
 * stay unique when the producer had already split it. Any other record over the limit is an error:
 * it could never be delivered. Message ids are the same in both label encodings (the neuron range a
 * message carries), so a resend in either form is dropped inside the duplicate window as long as it
 * splits the same way.
 */
export function toMessages(
  records: CmRecord[],
  maxBytes: number = MAX_MESSAGE_BYTES,
  labelEncoding: LabelEncoding = 'rows',
): OutgoingMessage[] {
  const out: OutgoingMessage[] = [];
  for (const record of records) {
    const body = encodeRecord(record, labelEncoding);
    if (body.byteLength <= maxBytes) {
      out.push({ record, msgId: messageIdFor(record), body });
      continue;
    }
    if (record.kind !== 'labels') {
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `${record.kind} record of run ${record.runId} is ${body.byteLength} bytes, over the ${maxBytes}-byte message limit`,
        {
          context: { kind: record.kind, runId: record.runId, bytes: body.byteLength, maxBytes },
        },
      );
    }
    for (const part of splitLabels(record, body.byteLength, maxBytes, labelEncoding)) {
      out.push({ record: part.record, msgId: messageIdFor(part.record), body: part.body });
    }
  }
  return out;
}

function splitLabels(
  record: LabelsRecord,
  bytes: number,
  maxBytes: number,
  labelEncoding: LabelEncoding,
): { record: LabelsRecord; body: Uint8Array }[] {
  // start from the size ratio (+ margin) and double the number of chunks until every chunk fits
  let k = Math.max(2, Math.ceil((bytes / maxBytes) * 1.1));
  for (;;) {
    if (k > record.labels.length) {
      throw new CmError(
        'RESOURCE_EXHAUSTED',
        `a single neuron row of layer ${record.layer} (run ${record.runId}, step ${record.step}) is over the ${maxBytes}-byte message limit`,
        {
          context: { runId: record.runId, layer: record.layer, step: record.step, maxBytes },
        },
      );
    }
    const size = Math.ceil(record.labels.length / k);
    const chunks: { record: LabelsRecord; body: Uint8Array }[] = [];
    const n = Math.ceil(record.labels.length / size);
    let fits = true;
    for (let i = 0; i < n; i++) {
      const part: LabelsRecord = {
        ...record,
        part: record.part * n + i,
        parts: record.parts * n,
        labels: record.labels.slice(i * size, (i + 1) * size),
      };
      const body = encodeRecord(part, labelEncoding);
      if (body.byteLength > maxBytes) {
        fits = false;
        break;
      }
      chunks.push({ record: part, body });
    }
    if (fits) return chunks;
    k *= 2;
  }
}
