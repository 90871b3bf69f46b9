/**
 * Where the contract lives and how both ends load it: the .proto file, the loader options (which
 * the generated types mirror) and the ConceptMonitor service definition.
 */
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { CmError } from '@cm/core';

/** The include folder of the contract (the repository's protos/). */
export const PROTO_ROOT = resolve(__dirname, '../../../protos');
/** The contract's path relative to PROTO_ROOT (its import name). */
export const PROTO_PATH = 'conceptmonitor/v1/monitor.proto';
export const PROTO_FILE = join(PROTO_ROOT, PROTO_PATH);
export const SERVICE_NAME = 'conceptmonitor.v1.ConceptMonitor';

/** Options shared by both ends: camelCase fields, enums as names, 64-bit ints as JS numbers. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: grpc.ServiceDefinition | undefined;

/** The ConceptMonitor service definition (loaded once per process). */
export function serviceDefinition(): grpc.ServiceDefinition {
  if (!cached) {
    const pkg = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
    const def = pkg[SERVICE_NAME];
    if (!def || !('Monitor' in def))
      throw new CmError('INTERNAL', `${PROTO_FILE} lacks service ${SERVICE_NAME}`);
    cached = def as grpc.ServiceDefinition;
  }
  return cached;
}

/** A generic client constructor for the service (the client library wraps it). */
export function clientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(serviceDefinition(), 'ConceptMonitor');
}
