/**
 * The contract's error table (monitor.proto header) in both directions, and the trailer names.
 * The service maps a CmError to the gRPC status its stream ends with (cmToGrpc); the client maps
 * a status back to a CmError code (grpcToCm) and decides whether resending can help (permanent
 * statuses fail the checkpoint; the others are an outage and the client reconnects and resends).
 */
import * as grpc from '@grpc/grpc-js';
import { CmError, type CmErrorCode } from '@cm/core';

/** Trailer naming the checkpoint step an error is about (the client uses it to blame one checkpoint). */
export const STEP_TRAILER = 'cm-step';

/** Every trailer of the contract, by meaning. */
export const TRAILERS = { step: STEP_TRAILER } as const;

/** CmError code -> gRPC status code. */
export const CM_TO_GRPC: Readonly<Record<CmErrorCode, grpc.status>> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  CONFIG: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  TIMEOUT: grpc.status.DEADLINE_EXCEEDED,
  CORRUPT: grpc.status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  INTERNAL: grpc.status.INTERNAL,
};

/**
 * gRPC status code -> CmError code, as the client reports a refused checkpoint. FAILED_PRECONDITION
 * comes back as CONFIG (the service sends CORRUPT that way too); a status the table does not name
 * is INTERNAL.
 */
export const GRPC_TO_CM: Readonly<Partial<Record<grpc.status, CmErrorCode>>> = {
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [grpc.status.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'TIMEOUT',
  [grpc.status.FAILED_PRECONDITION]: 'CONFIG',
};

/**
 * Statuses resending cannot fix: the client fails the checkpoint (or the run, before RunAccepted)
 * with the status's CmError. Any other non-OK status (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED,
 * ABORTED...) is an outage: reconnect and resend what is unacknowledged.
 */
export const PERMANENT_STATUSES: ReadonlySet<grpc.status> = new Set<grpc.status>([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.ALREADY_EXISTS,
  grpc.status.NOT_FOUND,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNIMPLEMENTED,
  grpc.status.INTERNAL,
  grpc.status.UNKNOWN,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
]);

export function cmToGrpc(code: CmErrorCode): grpc.status {
  return CM_TO_GRPC[code];
}

export function grpcToCm(code: grpc.status): CmErrorCode {
  return GRPC_TO_CM[code] ?? 'INTERNAL';
}

export function isPermanentStatus(code: grpc.status): boolean {
  return PERMANENT_STATUSES.has(code);
}

/** The client's error for a status the service (`target`) ended a stream with. */
export function statusToCmError(s: { code: grpc.status; details: string }, target: string): CmError {
  return new CmError(grpcToCm(s.code), `concept service ${target}: ${s.details || grpc.status[s.code]}`, {
    context: { grpcCode: grpc.status[s.code], target },
  });
}

/** Trailers naming `step` (none when the error is about no one checkpoint). */
export function stepMetadata(step: number | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (step !== undefined) metadata.set(STEP_TRAILER, String(step));
  return metadata;
}

/** The step a status's trailers blame, if any. */
export function stepFromMetadata(metadata: grpc.Metadata | undefined): number | undefined {
  const text = metadata?.get(STEP_TRAILER)[0];
  return text === undefined ? undefined : Number(text);
}
