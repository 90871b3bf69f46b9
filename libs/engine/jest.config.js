module.exports = { ...require('../../jest.preset.js'), displayName: 'engine', rootDir: __dirname, testEnvironment: require.resolve('./jest.environment.js') };
