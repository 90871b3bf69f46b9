import * as protobuf from 'protobufjs';

/**
 * Builds small ONNX models in memory (no .onnx files on disk). The message types below are the
 * subset of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto) these graphs need,
 * declared with protobufjs reflection so the field numbers sit in one place and protobufjs does the
 * wire encoding. Field numbers are copied from onnx.proto; do not renumber.
 */
const ONNX_SUBSET = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            type: { type: 'int32', id: 20 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
          },
        },
        Dimension: { fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 } } },
        TensorShapeProto: { fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } } },
        TensorTypeProto: {
          fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } },
        },
        TypeProto: { fields: { tensorType: { type: 'TensorTypeProto', id: 1 } } },
        ValueInfoProto: { fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } } },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } },
        },
        ModelProto: {
          fields: {
            irVersion: { type: 'int64', id: 1 },
            producerName: { type: 'string', id: 2 },
            graph: { type: 'GraphProto', id: 7 },
            opsetImport: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(ONNX_SUBSET);
const ModelProto = root.lookupType('onnx.ModelProto');

/** onnx.TensorProto.DataType.FLOAT */
const FLOAT = 1;
/** onnx.AttributeProto.AttributeType */
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

export type OnnxAttribute =
  { name: string; f: number } | { name: string; i: number } | { name: string; ints: number[] };
export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: OnnxAttribute[];
}
/** A float32 graph input or output; a string dimension is symbolic (any size). */
export interface OnnxValue {
  name: string;
  shape: (number | string)[];
}

function encodeAttribute(a: OnnxAttribute): Record<string, unknown> {
  if ('f' in a) return { name: a.name, f: a.f, type: ATTR_FLOAT };
  if ('i' in a) return { name: a.name, i: a.i, type: ATTR_INT };
  return { name: a.name, ints: a.ints, type: ATTR_INTS };
}

function encodeValue(v: OnnxValue): Record<string, unknown> {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Serialise a float32 graph to ONNX bytes (IR version 8, default-domain opset 13). */
export function buildOnnxModel(graph: {
  name: string;
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  nodes: OnnxNode[];
}): Uint8Array {
  const message = ModelProto.fromObject({
    irVersion: 8,
    producerName: 'concept-monitor',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: graph.name,
      input: graph.inputs.map(encodeValue),
      output: graph.outputs.map(encodeValue),
      node: graph.nodes.map((n, k) => ({
        input: n.inputs,
        output: n.outputs,
        name: `${n.op.toLowerCase()}_${k}`,
        opType: n.op,
        attribute: (n.attributes ?? []).map(encodeAttribute),
      })),
    },
  });
  return ModelProto.encode(message).finish();
}
