// Jest environment for tests that reach onnxruntime-node (CLIP via @huggingface/transformers,
// @cm/dissect's ONNX kernels). Jest runs tests in a vm context with its own typed-array
// constructors, while tensors coming back from the native binding are built with the main
// realm's; onnxruntime-common then rejects them ("A float32 tensor's data must be type of function
// Float32Array()"). Sharing the main realm's typed-array and ArrayBuffer constructors with the test
// context makes both sides agree.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'DataView',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'Float32Array',
  'Float64Array',
  'BigInt64Array',
  'BigUint64Array',
];

class NativeTypedArraysEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = NativeTypedArraysEnvironment;
