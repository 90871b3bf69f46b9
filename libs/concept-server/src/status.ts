import * as grpc from '@grpc/grpc-js';
import { CmError, isCmError, type CmErrorCode } from '@cm/core';

/** CmError code -> gRPC status code (the contract's error table, monitor.proto header). */
const TO_GRPC: Record<CmErrorCode, grpc.status> = {
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

/** Trailer naming the checkpoint step an error is about (the client uses it to blame one checkpoint). */
export const STEP_TRAILER = 'cm-step';

export interface GrpcStatusError {
  code: grpc.status;
  /** What the client receives: at most MAX_STATUS_DETAILS characters. */
  details: string;
  metadata: grpc.Metadata;
  /** The whole message, for the service log. */
  full: string;
}

/**
 * Longest status message sent. Status details travel in HTTP/2 trailers, which clients bound (8 KiB
 * of metadata by default in gRPC C core, 16 KiB in grpc-js): a longer one makes the client hang or
 * fail with "received metadata size exceeds limit" instead of showing the error.
 */
export const MAX_STATUS_DETAILS = 1000;

/** `s`, cut to MAX_STATUS_DETAILS with a note of how much more the service log holds. */
export function boundedDetails(s: string): string {
  if (s.length <= MAX_STATUS_DETAILS) return s;
  const note = ` ... (${s.length} characters in all; the rest is in the concept service log)`;
  return s.slice(0, MAX_STATUS_DETAILS - note.length) + note;
}

/**
 * Any error -> the status a stream ends with. The session wraps sink (NATS) failures as
 * CmError('UNAVAILABLE') so the client retries; anything else that is not a CmError is a bug of
 * ours and reported as INTERNAL.
 */
export function toGrpcStatus(e: unknown, step?: number): GrpcStatusError {
  const metadata = new grpc.Metadata();
  if (step !== undefined) metadata.set(STEP_TRAILER, String(step));
  if (isCmError(e)) {
    const full = e.toOneLine();
    return { code: TO_GRPC[e.code], details: boundedDetails(full), metadata, full };
  }
  const full = `concept service failed: ${e instanceof Error ? e.message : String(e)}`;
  return { code: grpc.status.INTERNAL, details: boundedDetails(full), metadata, full };
}

export function asCmError(e: unknown): CmError {
  return isCmError(e) ? e : new CmError('INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
}
