/**
 * The message shapes both ends work with, as names over the generated types (src/generated, made
 * from the proto by `npm run protocol:generate`). `X__Output` is what grpc-js decodes with
 * LOADER_OPTIONS: every field present (proto3 defaults), enums as their names, 64-bit integers as
 * numbers, bytes as Buffer. A field added to the proto appears here on regeneration, and the
 * conversions in wire.ts fail to type-check until they carry it.
 */
import type { ActivationChunk__Output } from './generated/conceptmonitor/v1/ActivationChunk';
import type { CheckpointAck__Output } from './generated/conceptmonitor/v1/CheckpointAck';
import type { CheckpointEnd__Output } from './generated/conceptmonitor/v1/CheckpointEnd';
import type { DType__Output } from './generated/conceptmonitor/v1/DType';
import type { HealthResponse__Output } from './generated/conceptmonitor/v1/HealthResponse';
import type { LayerKind__Output } from './generated/conceptmonitor/v1/LayerKind';
import type { Pooling__Output } from './generated/conceptmonitor/v1/Pooling';
import type { RandomInitEnd__Output } from './generated/conceptmonitor/v1/RandomInitEnd';
import type { RunAccepted__Output } from './generated/conceptmonitor/v1/RunAccepted';
import type { RunEnd__Output } from './generated/conceptmonitor/v1/RunEnd';
import type { RunStart__Output } from './generated/conceptmonitor/v1/RunStart';
import type { RunStatus__Output } from './generated/conceptmonitor/v1/RunStatus';
import type { ServiceMessage__Output } from './generated/conceptmonitor/v1/ServiceMessage';
import type { TrainerMessage__Output } from './generated/conceptmonitor/v1/TrainerMessage';

export type WireDType = DType__Output;
export type WirePooling = Pooling__Output;
export type WireLayerKind = LayerKind__Output;
export type WireRunStatus = RunStatus__Output;

export type WireRunStart = RunStart__Output;
export type WireActivationChunk = ActivationChunk__Output;
export type WireCheckpointEnd = CheckpointEnd__Output;
export type WireRandomInitEnd = RandomInitEnd__Output;
export type WireRunEnd = RunEnd__Output;
export type WireRunAccepted = RunAccepted__Output;
export type WireCheckpointAck = CheckpointAck__Output;
export type WireHealthResponse = HealthResponse__Output;

/**
 * A message with a oneof `body`, as a union with one member per case (the generator gives every
 * case as an optional field): `'chunk' in m` then narrows to a chunk that is there.
 */
export type OneofBody<M extends { body?: string }> = {
  [K in NonNullable<M['body']>]: { body?: K } & { [P in K]: NonNullable<M[P & keyof M]> };
}[NonNullable<M['body']>];

export type TrainerMessage = OneofBody<TrainerMessage__Output>;
export type ServiceMessage = OneofBody<ServiceMessage__Output>;
