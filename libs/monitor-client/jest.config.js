module.exports = { ...require('../../jest.preset.js'), displayName: 'monitor-client', rootDir: __dirname };
