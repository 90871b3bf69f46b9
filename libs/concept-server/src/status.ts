import * as grpc from '@grpc/grpc-js';
import { CmError, isCmError } from '@cm/core';
import { cmToGrpc, stepMetadata } from '@cm/protocol';

// The error table (CmError code <-> gRPC status) and the trailer names are the contract's, in
// @cm/protocol; re-exported for the service's callers.
export { STEP_TRAILER } from '@cm/protocol';

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
  const metadata = stepMetadata(step);
  if (isCmError(e)) {
    const full = e.toOneLine();
    return { code: cmToGrpc(e.code), details: boundedDetails(full), metadata, full };
  }
  const full = `concept service failed: ${e instanceof Error ? e.message : String(e)}`;
  return { code: grpc.status.INTERNAL, details: boundedDetails(full), metadata, full };
}

export function asCmError(e: unknown): CmError {
  return isCmError(e) ? e : new CmError('INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
}
