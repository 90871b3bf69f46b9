#!/usr/bin/env node
// Runs the whole jest suite (all projects) and ends with the plain closing line CI counts:
//   N passed, N failed
// Extra arguments go to jest (e.g. `npm test -- libs/dissect`). Exits non-zero when a test failed.
const { spawnSync } = require('node:child_process');
const { readFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..', '..');
const out = join(root, '.test-results.json');
rmSync(out, { force: true });
const jestBin = require.resolve('jest/bin/jest');
const res = spawnSync(
  process.execPath,
  [jestBin, '--json', `--outputFile=${out}`, ...process.argv.slice(2)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
let summary;
try {
  summary = JSON.parse(readFileSync(out, 'utf8'));
} catch {
  console.error('run-jest: jest wrote no results (it crashed before running tests)');
  console.log('0 passed, 1 failed');
  process.exit(res.status || 1);
}
const failedSuites = summary.testResults.filter(
  (r) => r.status === 'failed' && r.assertionResults.length === 0,
);
for (const s of failedSuites) console.error(`run-jest: suite failed to run: ${s.name}\n${s.message}`);
const failed = summary.numFailedTests + failedSuites.length;
const skipped = summary.numPendingTests + summary.numTodoTests;
console.log(`${summary.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || !summary.success ? 1 : (res.status ?? 0));
