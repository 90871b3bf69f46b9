import {
  AckPolicy,
  DeliverPolicy,
  nanos,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from 'nats';
import {
  CONSUMERS,
  isLabelsColumnsRecord,
  parseSubject,
  STREAM,
  validateWireRecord,
  type WireRecord,
} from '@cm/contracts';
import { createLogger, errorMessage, type Logger } from '@cm/core';
import { appendRows, rowCount, TABLE_OF, type Store, type TableRows } from '@cm/store';
import { jetStreamErrorCode, JS_ERR } from '@cm/bus';

/**
 * The recorder: a durable JetStream pull consumer that writes records into ClickHouse.
 *
 * Delivery is at-least-once (a message is acked only after the insert that holds it succeeded;
 * a crash between insert and ack redelivers it), and the tables make a repeated insert harmless
 * (ReplacingMergeTree on the natural key, read with FINAL): stored exactly once in effect.
 *
 * Messages are pulled continuously (`consume`) and grouped into batches: a batch is written when it
 * holds `batchMessages` messages or `lingerMs` after its first message, whichever comes first, so a
 * lone checkpoint is queryable within ~lingerMs while a backlog is written in large inserts.
 * The server bounds the messages held here by the consumer's max_ack_pending.
 *
 * Labels messages come in either wire form (LabelsRecord rows, or the compact LabelsColumnsRecord);
 * both are validated per message and written straight into the batch's insert body in the store's
 * label format (RowBinary on a server), with no row objects in between.
 */
export interface RecorderOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  store: Store;
  /** Largest batch, in messages (default 100: small enough that decoding one batch overlaps inserting the previous). */
  batchMessages?: number;
  /** How long a partial batch waits for more messages (default 100 ms). */
  lingerMs?: number;
  /** Consumer ack wait: an unacked message is redelivered after it (default 30 s). */
  ackWaitMs?: number;
  logger?: Logger;
  /** Told of every batch, failure, redelivery and termination (metrics; see libs/metrics). */
  observer?: RecorderObserver;
}

/** What the recorder reports as it works: the seam its metrics hang on, free of any metrics library. */
export interface RecorderObserver {
  batchStored(batch: { messages: number; rows: Record<string, number>; insertSeconds: number }): void;
  insertFailed(): void;
  messageTerminated(): void;
  /** A message arrived that had been delivered before (its earlier delivery was not acked). */
  messageRedelivered(): void;
}

export interface RecorderStats {
  /** Messages stored and acked. */
  stored: number;
  /** Malformed messages terminated. */
  terminated: number;
  batches: number;
  labelRows: number;
  failedInserts: number;
  /** Time spent decoding/validating/encoding and inserting (ms, cumulative): where a batch goes. */
  decodeMs: number;
  insertMs: number;
  lastInsertAt?: string;
  lastError?: string;
}

interface Pending {
  msg: JsMsg;
  record: WireRecord;
}

/** One decoder for every message (a TextDecoder per message was measurable garbage). */
const utf8 = new TextDecoder();

/** Two: one insert on the server while the next batch is decoded here. */
const MAX_INSERTS_IN_FLIGHT = 2;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class RecorderConsumer {
  readonly stats: RecorderStats = {
    stored: 0,
    terminated: 0,
    batches: 0,
    labelRows: 0,
    failedInserts: 0,
    decodeMs: 0,
    insertMs: 0,
  };
  private readonly log: Logger;
  private readonly batchMessages: number;
  private readonly lingerMs: number;
  private readonly ackWaitMs: number;
  private messages?: ConsumerMessages;
  private buffer: JsMsg[] = [];
  private lingerTimer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private readonly inserts = new Set<Promise<void>>();
  private consecutiveFailures = 0;
  private stopped = false;

  constructor(private readonly opts: RecorderOptions) {
    this.log = opts.logger ?? createLogger('recorder');
    this.batchMessages = opts.batchMessages ?? 100;
    this.lingerMs = opts.lingerMs ?? 100;
    this.ackWaitMs = opts.ackWaitMs ?? 30_000;
  }

  /** Create or update the durable consumer (idempotent; the stream must exist). */
  async ensureConsumer(): Promise<void> {
    const { jsm } = this.opts;
    const wanted = {
      durable_name: CONSUMERS.recorder,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(this.ackWaitMs),
      max_ack_pending: this.batchMessages * 4,
      max_deliver: -1,
    };
    try {
      const info = await jsm.consumers.info(STREAM.name, CONSUMERS.recorder);
      if (
        info.config.ack_wait !== wanted.ack_wait ||
        info.config.max_ack_pending !== wanted.max_ack_pending
      ) {
        await jsm.consumers.update(STREAM.name, CONSUMERS.recorder, {
          ack_wait: wanted.ack_wait,
          max_ack_pending: wanted.max_ack_pending,
        });
      }
    } catch (e) {
      if (jetStreamErrorCode(e) !== JS_ERR.consumerNotFound) throw e;
      await jsm.consumers.add(STREAM.name, wanted);
    }
  }

  /** Start consuming; returns once the subscription is live. */
  async start(): Promise<void> {
    await this.ensureConsumer();
    const consumer = await this.opts.js.consumers.get(STREAM.name, CONSUMERS.recorder);
    this.messages = await consumer.consume({
      max_messages: this.batchMessages * 2,
      callback: (msg) => this.onMessage(msg),
    });
    this.log.info('recorder consuming', {
      stream: STREAM.name,
      consumer: CONSUMERS.recorder,
      batchMessages: this.batchMessages,
    });
  }

  /** Stop pulling, write and ack what is buffered, and return. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.scheduleFlush();
    await this.flushing;
  }

  /** True while the consumer runs and the last insert did not fail. */
  healthy(): boolean {
    return !this.stopped && this.consecutiveFailures === 0;
  }

  private onMessage(msg: JsMsg): void {
    if (msg.redelivered) this.opts.observer?.messageRedelivered();
    this.buffer.push(msg);
    if (this.buffer.length >= this.batchMessages) {
      if (this.lingerTimer) clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      this.scheduleFlush();
    } else if (!this.lingerTimer) {
      this.lingerTimer = setTimeout(() => {
        this.lingerTimer = undefined;
        this.scheduleFlush();
      }, this.lingerMs);
    }
  }

  /**
   * Batches are decoded one after another (CPU, this thread) and inserted with up to
   * MAX_INSERTS_IN_FLIGHT at once, so decoding batch n+1 overlaps the server's work on batch n.
   * Insert order does not matter: rows are versioned by their record time, not by arrival.
   */
  private scheduleFlush(): void {
    this.flushing = this.flushing.then(async () => {
      while (this.buffer.length) {
        const prepared = this.prepare(this.buffer.splice(0, this.batchMessages));
        if (!prepared) continue;
        const insert = this.commit(prepared).finally(() => this.inserts.delete(insert));
        this.inserts.add(insert);
        if (this.inserts.size >= MAX_INSERTS_IN_FLIGHT) await Promise.race(this.inserts);
      }
      await Promise.all(this.inserts);
    });
  }

  /**
   * Decode and check one message and append its rows to the batch (all or nothing); a message no
   * table can hold is terminated, never retried.
   */
  private decode(msg: JsMsg, rows: TableRows): Pending | undefined {
    try {
      const record = validateWireRecord(JSON.parse(utf8.decode(msg.data)));
      const subject = parseSubject(msg.subject);
      if (!subject || subject.kind !== record.kind || subject.runId !== record.runId) {
        throw new Error(
          `subject ${msg.subject} does not match the record (${record.kind} of run ${record.runId})`,
        );
      }
      appendRows(rows, record);
      return { msg, record };
    } catch (e) {
      this.log.warn('malformed message terminated', {
        subject: msg.subject,
        seq: msg.info.streamSequence,
        error: errorMessage(e),
      });
      // no reason string: `+TERM <reason>` needs nats-server 2.10, and 2.9 (Debian's) ignores it
      msg.term();
      this.stats.terminated++;
      this.opts.observer?.messageTerminated();
      return undefined;
    }
  }

  private prepare(batch: JsMsg[]): { rows: TableRows; pending: Pending[] } | undefined {
    const decodeStart = performance.now();
    const rows = this.opts.store.newRows();
    const pending = batch.map((m) => this.decode(m, rows)).filter((p): p is Pending => p !== undefined);
    this.stats.decodeMs += performance.now() - decodeStart;
    return pending.length ? { rows, pending } : undefined;
  }

  /** Insert a prepared batch, then ack its messages; on failure nak them with a growing delay. */
  private async commit({ rows, pending }: { rows: TableRows; pending: Pending[] }): Promise<void> {
    // a long insert must not let the ack wait expire (that would redeliver what is being written)
    const keepAlive = setInterval(
      () => pending.forEach((p) => p.msg.working()),
      Math.max(500, this.ackWaitMs / 3),
    );
    const started = Date.now();
    try {
      await this.opts.store.insertRows(rows);
    } catch (e) {
      clearInterval(keepAlive);
      this.consecutiveFailures++;
      this.stats.failedInserts++;
      this.opts.observer?.insertFailed();
      this.stats.lastError = errorMessage(e);
      const delay = Math.min(30_000, 500 * 2 ** Math.min(6, this.consecutiveFailures - 1));
      this.log.error('insert failed; messages will be redelivered', {
        messages: pending.length,
        retryInMs: delay,
        error: errorMessage(e),
      });
      for (const p of pending) p.msg.nak(delay);
      if (!this.stopped) await sleep(delay); // don't spin on a store that is down
      return;
    }
    clearInterval(keepAlive);
    this.stats.insertMs += Date.now() - started;
    for (const p of pending) p.msg.ack();
    this.consecutiveFailures = 0;
    this.stats.stored += pending.length;
    this.stats.batches++;
    this.stats.labelRows += rows.counts.neuronLabels;
    this.stats.lastInsertAt = new Date().toISOString();
    this.opts.observer?.batchStored({
      messages: pending.length,
      rows: rowsByTable(rows),
      insertSeconds: (Date.now() - started) / 1000,
    });
    this.log.info('stored batch', {
      ...summarize(pending.map((p) => p.record)),
      rows: rowCount(rows),
      ms: Date.now() - started,
    });
  }
}

/** Rows of a batch by ClickHouse table name (TABLE_OF maps the batch's keys). */
function rowsByTable(rows: TableRows): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, n] of Object.entries(rows.counts) as [keyof typeof TABLE_OF, number][])
    if (n > 0) out[TABLE_OF[key]] = n;
  return out;
}

/** What a batch held, for its log line: records by kind and the checkpoints (run@step) it touched. */
export function summarize(records: WireRecord[]): {
  records: number;
  labelRows: number;
  checkpoints: string[];
} {
  const checkpoints = new Set<string>();
  let labelRows = 0;
  for (const r of records) {
    if (r.kind === 'labels')
      labelRows += isLabelsColumnsRecord(r) ? r.columns.neuron.length : r.labels.length;
    if ('step' in r) checkpoints.add(`${r.runId}@${r.step}`);
  }
  const list = [...checkpoints];
  return {
    records: records.length,
    labelRows,
    checkpoints: list.length > 10 ? [...list.slice(0, 10), `+${list.length - 10} more`] : list,
  };
}
