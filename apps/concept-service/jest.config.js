module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'concept-service',
  rootDir: __dirname,
  // shares the main realm's typed arrays with tests (onnxruntime-node in @cm/dissect needs it)
  testEnvironment: require.resolve('../../libs/engine/jest.environment.js'),
};
