module.exports = { ...require('../../jest.preset.js'), displayName: 'alerts', rootDir: __dirname };
