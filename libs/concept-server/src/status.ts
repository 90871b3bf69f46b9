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
  details: string;
  metadata: grpc.Metadata;
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
    return { code: TO_GRPC[e.code], details: e.toOneLine(), metadata };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { code: grpc.status.INTERNAL, details: `concept service failed: ${message}`, metadata };
}

export function asCmError(e: unknown): CmError {
  return isCmError(e) ? e : new CmError('INTERNAL', e instanceof Error ? e.message : String(e), { cause: e });
}
