// The jest environment of every project (set in jest.preset.js).
// jest runs each test file in its own vm realm, so `new Float32Array()` in a test is not an
// instance of the main realm's Float32Array. onnxruntime-node (used by @cm/dissect) builds its
// output tensors in the main realm and checks them with `instanceof` against the test realm's
// classes, which fails ("A float32 tensor's data must be type of Float32Array"). Sharing the main
// realm's typed-array classes with the test realm makes both sides agree.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer',
  'SharedArrayBuffer',
  'DataView',
  'Float32Array',
  'Float64Array',
  'Int8Array',
  'Int16Array',
  'Int32Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Uint16Array',
  'Uint32Array',
  'BigInt64Array',
  'BigUint64Array',
];

class SharedTypedArrayEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}
module.exports = SharedTypedArrayEnvironment;
