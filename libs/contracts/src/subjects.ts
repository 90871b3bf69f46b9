/**
 * NATS names, in one place. Subjects are versioned (`cm.v1`) and carry the record kind and the run:
 *   cm.v1.<kind>.<run-token>
 * A run id is free text from a trainer, so it is encoded into a single safe subject token
 * (`encodeToken`): '.', '*', '>' and whitespace would otherwise split or wildcard the subject.
 */
export const SUBJECT_ROOT = 'cm.v1';

export type RecordKind = 'run' | 'checkpoint' | 'labels' | 'snapshot' | 'alert';
export const RECORD_KINDS: readonly RecordKind[] = ['run', 'checkpoint', 'labels', 'snapshot', 'alert'];

/** Encode free text as one NATS subject token: [A-Za-z0-9_-] kept, every other byte as ~XX (hex). */
export function encodeToken(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : '~' + byte.toString(16).padStart(2, '0');
  }
  return out.length ? out : '~';
}

export function decodeToken(token: string): string {
  if (token === '~') return '';
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '~') {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

export function subjectFor(kind: RecordKind, runId: string): string {
  return `${SUBJECT_ROOT}.${kind}.${encodeToken(runId)}`;
}

/** Parse `cm.v1.<kind>.<run>` back; undefined for a subject that is not ours. */
export function parseSubject(subject: string): { kind: RecordKind; runId: string } | undefined {
  const parts = subject.split('.');
  if (parts.length !== 4 || `${parts[0]}.${parts[1]}` !== SUBJECT_ROOT) return undefined;
  const kind = parts[2] as RecordKind;
  if (!RECORD_KINDS.includes(kind)) return undefined;
  return { kind, runId: decodeToken(parts[3]) };
}

/** The JetStream stream that holds every record until the recorder has stored it. */
export const STREAM = {
  name: 'CM_V1',
  subjects: [`${SUBJECT_ROOT}.>`],
  /** Duplicate window for Nats-Msg-Id de-duplication (a resend inside it is dropped by the server). */
  duplicateWindowMs: 10 * 60 * 1000,
} as const;

/**
 * The JetStream key-value bucket of the concept service's per-run state (PersistedRunState in
 * run-state.ts): one key per run, only the latest value kept.
 */
export const RUN_STATE_BUCKET = {
  name: 'CM_RUN_STATE_V1',
  history: 1,
} as const;

/**
 * The bucket key of a run: `encodeToken` with '~' written as '=' (KV keys allow [-/_=.A-Za-z0-9]),
 * so ordinary run ids stay readable (`nats kv get CM_RUN_STATE_V1 my-run`).
 */
export function runStateKey(runId: string): string {
  return encodeToken(runId).replace(/~/g, '=');
}

/** Durable consumer names. */
export const CONSUMERS = {
  recorder: 'cm-recorder',
} as const;

/** Subject alerts are also published on for live subscribers (terminal view, webhooks). */
export const ALERT_SUBJECT_WILDCARD = `${SUBJECT_ROOT}.alert.>`;

/** Message id that makes a resend harmless: same record, same id. */
export function messageId(kind: RecordKind, runId: string, ...key: (string | number)[]): string {
  return [kind, encodeToken(runId), ...key.map((k) => encodeToken(String(k)))].join('.');
}

/** Largest message we publish; NATS' default max_payload is 1 MiB. */
export const MAX_MESSAGE_BYTES = 900 * 1024;
