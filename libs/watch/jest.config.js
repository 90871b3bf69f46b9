module.exports = { ...require('../../jest.preset.js'), displayName: 'watch', rootDir: __dirname };
