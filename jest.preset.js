// Shared jest settings for every project. @swc/jest strips types (fast); `npm run typecheck` checks them.
const path = require('node:path');
module.exports = {
  // node, with the main realm's typed arrays shared into the test realm (see the file).
  testEnvironment: path.join(__dirname, 'tools/test/jest-environment.js'),
  transform: {
    '^.+\\.ts$': [
      require.resolve('@swc/jest'),
      { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } },
    ],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testMatch: ['<rootDir>/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
  testTimeout: 60000,
  setupFiles: [path.join(__dirname, 'tools/test/jest-setup.js')],
};
