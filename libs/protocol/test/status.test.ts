import * as grpc from '@grpc/grpc-js';
import type { CmErrorCode } from '@cm/core';
import {
  CM_TO_GRPC,
  cmToGrpc,
  grpcToCm,
  isPermanentStatus,
  statusToCmError,
  STEP_TRAILER,
  stepFromMetadata,
  stepMetadata,
  TRAILERS,
} from '../src';

describe('error table', () => {
  it('maps every CmError code to the status of the monitor.proto header', () => {
    expect(cmToGrpc('INVALID_ARGUMENT')).toBe(grpc.status.INVALID_ARGUMENT);
    expect(cmToGrpc('NOT_FOUND')).toBe(grpc.status.NOT_FOUND);
    expect(cmToGrpc('ALREADY_EXISTS')).toBe(grpc.status.ALREADY_EXISTS);
    expect(cmToGrpc('RESOURCE_EXHAUSTED')).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(cmToGrpc('UNAVAILABLE')).toBe(grpc.status.UNAVAILABLE);
    expect(cmToGrpc('TIMEOUT')).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(cmToGrpc('CONFIG')).toBe(grpc.status.FAILED_PRECONDITION);
    expect(cmToGrpc('CORRUPT')).toBe(grpc.status.FAILED_PRECONDITION);
    expect(cmToGrpc('INTERNAL')).toBe(grpc.status.INTERNAL);
  });

  it('brings every code back to itself through the wire, except CORRUPT (sent as FAILED_PRECONDITION, read as CONFIG)', () => {
    const codes = Object.keys(CM_TO_GRPC) as CmErrorCode[];
    const back = codes.filter((c) => grpcToCm(cmToGrpc(c)) !== c);
    expect(back).toEqual(['CORRUPT']);
    expect(grpcToCm(cmToGrpc('CORRUPT'))).toBe('CONFIG');
  });

  it('reads a status it does not name as INTERNAL', () => {
    expect(grpcToCm(grpc.status.DATA_LOSS)).toBe('INTERNAL');
    expect(grpcToCm(grpc.status.UNKNOWN)).toBe('INTERNAL');
  });

  it('tells permanent refusals from outages the client retries', () => {
    for (const s of [
      grpc.status.INVALID_ARGUMENT,
      grpc.status.NOT_FOUND,
      grpc.status.RESOURCE_EXHAUSTED,
      grpc.status.INTERNAL,
    ])
      expect(isPermanentStatus(s)).toBe(true);
    for (const s of [
      grpc.status.UNAVAILABLE,
      grpc.status.DEADLINE_EXCEEDED,
      grpc.status.CANCELLED,
      grpc.status.ABORTED,
    ])
      expect(isPermanentStatus(s)).toBe(false);
    // every status the service sends for a bad checkpoint fails it instead of resending it forever
    const sent = (Object.keys(CM_TO_GRPC) as CmErrorCode[]).filter(
      (c) => c !== 'UNAVAILABLE' && c !== 'TIMEOUT',
    );
    expect(sent.filter((c) => !isPermanentStatus(cmToGrpc(c)))).toEqual([]);
  });

  it('builds the client error with the status code name and target', () => {
    const e = statusToCmError({ code: grpc.status.ALREADY_EXISTS, details: 'run r1 exists' }, 'h:1');
    expect(e.code).toBe('ALREADY_EXISTS');
    expect(e.message).toBe('concept service h:1: run r1 exists');
    expect(e.context).toMatchObject({ grpcCode: 'ALREADY_EXISTS', target: 'h:1' });
    expect(statusToCmError({ code: grpc.status.UNAVAILABLE, details: '' }, 'h:1').message).toBe(
      'concept service h:1: UNAVAILABLE',
    );
  });
});

describe('trailers', () => {
  it('names the step trailer cm-step and round-trips the step', () => {
    expect(STEP_TRAILER).toBe('cm-step');
    expect(TRAILERS.step).toBe(STEP_TRAILER);
    const m = stepMetadata(42);
    expect(m.get('cm-step')).toEqual(['42']);
    expect(stepFromMetadata(m)).toBe(42);
    expect(stepFromMetadata(stepMetadata(undefined))).toBeUndefined();
    expect(stepFromMetadata(undefined)).toBeUndefined();
  });
});
