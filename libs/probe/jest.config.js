module.exports = { ...require('../../jest.preset.js'), displayName: 'probe', rootDir: __dirname };
