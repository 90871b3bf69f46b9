module.exports = { ...require('../../jest.preset.js'), displayName: 'dashboards', rootDir: __dirname };
