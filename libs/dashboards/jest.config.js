// The store test runs the concept engine (onnxruntime-node inside @cm/dissect): it needs the
// engine's environment, which shares the main realm's typed arrays with the test realm.
module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'dashboards',
  rootDir: __dirname,
  testEnvironment: require.resolve('../engine/jest.environment.js'),
};
