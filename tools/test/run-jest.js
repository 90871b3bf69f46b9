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
const py = runPytest();
const failed = summary.numFailedTests + failedSuites.length + py.failed;
const skipped = summary.numPendingTests + summary.numTodoTests + py.skipped;
const passed = summary.numPassedTests + py.passed;
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || !summary.success ? 1 : (res.status ?? 0));

/**
 * The Python tests (libs/monitor-client-py, tools/reference), after jest, counted into the same line:
 * run when jest got no filter arguments (CM_PYTEST=1 forces it, CM_PYTEST=0 skips it). Its junit
 * report gives the counts; no report, or pytest's exit 5 (no tests collected), is one failure.
 */
function runPytest() {
  const none = { passed: 0, failed: 0, skipped: 0 };
  const wanted = process.env.CM_PYTEST ?? (process.argv.length > 2 ? '0' : '1');
  if (wanted === '0') return none;
  const dir = join(root, 'libs', 'monitor-client-py');
  const report = join(root, '.test-results-py.xml');
  rmSync(report, { force: true });
  // the SDK's tests, and tools/reference (the PyTorch soft_wpmi the dissection benchmark runs
  // against, checked on the reference test vectors); the SDK's pyproject holds the pytest settings
  const py = spawnSync(
    '/usr/bin/python3',
    [
      '-m',
      'pytest',
      '-q',
      '-c',
      join(dir, 'pyproject.toml'),
      `--junitxml=${report}`,
      join(dir, 'tests'),
      join(root, 'tools', 'reference'),
    ],
    { cwd: dir, stdio: 'inherit' },
  );
  if (py.status === 5) {
    console.error('run-jest: pytest collected no tests in libs/monitor-client-py');
    return { ...none, failed: 1 };
  }
  let xml;
  try {
    xml = readFileSync(report, 'utf8');
  } catch {
    console.error(
      `run-jest: pytest wrote no report (exit ${py.status ?? py.error}); is python3-pytest installed (bash tools/setup.sh)?`,
    );
    return { ...none, failed: 1 };
  }
  const attr = (name) =>
    [...xml.matchAll(new RegExp(`<testsuite\\b[^>]*\\b${name}="(\\d+)"`, 'g'))].reduce(
      (a, m) => a + Number(m[1]),
      0,
    );
  const total = attr('tests');
  const failedPy = attr('failures') + attr('errors');
  const skippedPy = attr('skipped');
  const counted = { passed: total - failedPy - skippedPy, failed: failedPy, skipped: skippedPy };
  if (py.status !== 0 && counted.failed === 0) {
    console.error(`run-jest: pytest exited ${py.status} without a failed test in its report`);
    counted.failed = 1;
  }
  console.error(`run-jest: pytest ${counted.passed} passed, ${counted.failed} failed`);
  return counted;
}
