module.exports = { ...require('../../jest.preset.js'), displayName: 'concept-server', rootDir: __dirname };
