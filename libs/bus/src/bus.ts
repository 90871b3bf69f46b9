import {
  connect,
  nanos,
  RetentionPolicy,
  StorageType,
  DiscardPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  type StreamConfig,
  type PubAck,
} from 'nats';
import {
  ALERT_SUBJECT_WILDCARD,
  MAX_MESSAGE_BYTES,
  STREAM,
  subjectFor,
  validateRecord,
  type AlertRecord,
  type CmRecord,
} from '@cm/contracts';
import { CmError, createLogger, errorMessage, withTimeout } from '@cm/core';
import { toMessages, type LabelEncoding } from './split';

const log = createLogger('bus');

export interface BusOptions {
  url: string;
  user?: string;
  password?: string;
  /** Connection name shown by the NATS server (monitoring, `nats server report connections`). */
  name?: string;
  /**
   * How publishRecords encodes labels records (default `rows`, the LabelsRecord JSON). `columns`
   * is the compact columnar form (a third of the bytes, several times faster for the recorder to
   * decode); only the recorder reads labels messages, and it accepts both.
   */
  labelEncoding?: LabelEncoding;
}

export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** Create the stream, or bring an existing one to our subjects and duplicate window. Idempotent. */
  ensureStream(replicas?: number): Promise<void>;
  /**
   * Publish records as JSON on `subjectFor(kind, runId)` with a Nats-Msg-Id, and resolve once every
   * message is acknowledged by JetStream (stored, replicated). A resend inside the duplicate window is
   * acknowledged as a duplicate and not stored twice.
   */
  publishRecords(records: CmRecord[]): Promise<void>;
  /** Live alerts (core NATS subscription, no replay); returns the unsubscribe function. */
  subscribeAlerts(onAlert: (alert: AlertRecord) => void): () => void;
  /**
   * A real JetStream round trip (the stream's info), bounded by `timeoutMs`: what health endpoints
   * report. The connection flag alone stays "connected" while nats-server is frozen or has lost
   * JetStream; this answers false then, within the timeout.
   */
  probe(timeoutMs?: number): Promise<BusProbe>;
  /**
   * Whether the stream holds a run record of this run (any status, within the stream's retention):
   * the concept service's way to tell a used run id once the run's saved state is gone.
   */
  runRecordPublished(runId: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface BusProbe {
  ok: boolean;
  /** `jetstream ok` or why not, for the health report. */
  detail: string;
  latencyMs: number;
}

/** JetStream API error codes we act on (nats-server's errors.json), rather than their wording. */
export const JS_ERR = {
  streamNotFound: 10059,
  streamNameInUse: 10058,
  consumerNotFound: 10014,
  noMessageFound: 10037,
} as const;

/** The JetStream API error code of a failed request (`err_code`), if the server sent one. */
export function jetStreamErrorCode(e: unknown): number | undefined {
  const api = (e as { api_error?: { err_code?: unknown } } | undefined)?.api_error;
  return typeof api?.err_code === 'number' ? api.err_code : undefined;
}

/** Messages in flight at once while publishing: enough to fill the pipe, bounded in memory. */
const PUBLISH_WINDOW = 256;

export function streamConfig(replicas = 1): Partial<StreamConfig> & { name: string } {
  return {
    name: STREAM.name,
    subjects: [...STREAM.subjects],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: replicas,
    duplicate_window: nanos(STREAM.duplicateWindowMs),
    // a week of history for replays; the recorder keeps ClickHouse as the system of record
    max_age: nanos(7 * 24 * 3600 * 1000),
  };
}

export async function connectBus(opts: BusOptions): Promise<Bus> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      // a cluster is a comma-separated list of its nodes; the client fails over between them
      servers: opts.url
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean),
      user: opts.user,
      pass: opts.password,
      name: opts.name,
      // keep trying forever once connected: services outlive a NATS restart
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
  } catch (e) {
    throw new CmError('UNAVAILABLE', `cannot connect to NATS at ${opts.url}: ${errorMessage(e)}`, {
      context: { url: opts.url },
      cause: e,
      hint: 'start it with `cm stack up` or set CM_NATS_URL',
    });
  }
  const jsm = await nc.jetstreamManager().catch((e: unknown) => {
    void nc.close();
    throw new CmError('UNAVAILABLE', `NATS at ${opts.url} has no JetStream: ${errorMessage(e)}`, {
      context: { url: opts.url },
      cause: e,
      hint: 'run nats-server with -js',
    });
  });
  const js = nc.jetstream();

  async function ensureStream(replicas = 1): Promise<void> {
    const wanted = streamConfig(replicas);
    try {
      const info = await jsm.streams.info(STREAM.name);
      const c = info.config;
      const same =
        c.duplicate_window === wanted.duplicate_window &&
        c.subjects.length === wanted.subjects!.length &&
        c.subjects.every((s, i) => s === wanted.subjects![i]);
      if (!same) {
        await jsm.streams.update(STREAM.name, {
          subjects: wanted.subjects,
          duplicate_window: wanted.duplicate_window,
        });
        log.info('stream updated', { stream: STREAM.name });
      }
    } catch (e) {
      if (jetStreamErrorCode(e) !== JS_ERR.streamNotFound) throw e;
      try {
        await jsm.streams.add(wanted);
        log.info('stream created', { stream: STREAM.name, replicas });
      } catch (addError) {
        // another process created it between our info and add: fine, that is the point of idempotence
        if (jetStreamErrorCode(addError) !== JS_ERR.streamNameInUse) throw addError;
      }
    }
  }

  async function publishRecords(records: CmRecord[]): Promise<void> {
    const messages = toMessages(records, MAX_MESSAGE_BYTES, opts.labelEncoding ?? 'rows');
    const inFlight = new Set<Promise<PubAck>>();
    const failures: unknown[] = [];
    for (const m of messages) {
      const p = js.publish(subjectFor(m.record.kind, m.record.runId), m.body, { msgID: m.msgId });
      inFlight.add(p);
      p.then(
        () => inFlight.delete(p),
        (e: unknown) => {
          inFlight.delete(p);
          failures.push(e);
        },
      );
      if (inFlight.size >= PUBLISH_WINDOW) await Promise.race(inFlight).catch(() => undefined);
    }
    await Promise.allSettled([...inFlight]);
    if (failures.length) {
      throw new CmError(
        'UNAVAILABLE',
        `${failures.length} of ${messages.length} messages were not acknowledged by JetStream: ${errorMessage(failures[0])}`,
        {
          context: { failed: failures.length, total: messages.length },
          cause: failures[0],
          hint: 'is the stream created (ensureStream) and NATS reachable? resending is safe',
        },
      );
    }
  }

  function subscribeAlerts(onAlert: (alert: AlertRecord) => void): () => void {
    const sub = nc.subscribe(ALERT_SUBJECT_WILDCARD, {
      callback: (err, msg) => {
        if (err) {
          log.warn('alert subscription error', { error: errorMessage(err) });
          return;
        }
        try {
          const record = validateRecord(msg.json());
          if (record.kind === 'alert') onAlert(record);
        } catch (e) {
          log.warn('ignoring malformed alert message', { subject: msg.subject, error: errorMessage(e) });
        }
      },
    });
    return () => sub.unsubscribe();
  }

  async function probe(timeoutMs = 2000): Promise<BusProbe> {
    const started = Date.now();
    if (nc.isClosed()) return { ok: false, detail: 'connection closed', latencyMs: 0 };
    try {
      await withTimeout(jsm.streams.info(STREAM.name), timeoutMs, 'JetStream stream info');
      return { ok: true, detail: 'jetstream ok', latencyMs: Date.now() - started };
    } catch (e) {
      return { ok: false, detail: errorMessage(e), latencyMs: Date.now() - started };
    }
  }

  async function runRecordPublished(runId: string): Promise<boolean> {
    try {
      await jsm.streams.getMessage(STREAM.name, { last_by_subj: subjectFor('run', runId) });
      return true;
    } catch (e) {
      if (jetStreamErrorCode(e) === JS_ERR.noMessageFound) return false;
      throw new CmError('UNAVAILABLE', `cannot look up run ${runId} in JetStream: ${errorMessage(e)}`, {
        context: { runId },
        cause: e,
      });
    }
  }

  return {
    nc,
    js,
    jsm,
    ensureStream,
    publishRecords,
    subscribeAlerts,
    probe,
    runRecordPublished,
    close: async () => {
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
}
