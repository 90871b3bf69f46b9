module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'probe',
  rootDir: __dirname,
  // onnxruntime-node (CLIP, @cm/dissect) needs the main realm's typed arrays: see the file.
  testEnvironment: '<rootDir>/test/native-typed-arrays-environment.js',
};
