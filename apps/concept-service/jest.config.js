module.exports = { ...require('../../jest.preset.js'), displayName: 'concept-service', rootDir: __dirname };
