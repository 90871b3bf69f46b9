module.exports = { ...require('../../jest.preset.js'), displayName: 'dissect', rootDir: __dirname };
