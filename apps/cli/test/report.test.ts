import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { createLocalMonitor } from '@cm/engine';
import {
  makeTestBundles,
  testCheckpoint,
  testRunSpec,
  TEST_LAYERS,
  type TestBundles,
} from '@cm/engine/src/testing';
import { openStore } from '@cm/store';
import { cmWith } from './run-cm';

/**
 * `cm report` as a user runs it, on a store filled by real engine runs (the engine and its
 * dissection in this process, into chDB; the folder is released before the subprocess reads it).
 */
const dir = mkdtempSync(join(tmpdir(), 'cm-report-'));
let tb: TestBundles;
let cm: ReturnType<typeof cmWith>;
const STEPS = [0, 50, 100, 150, 200];

beforeAll(async () => {
  tb = await makeTestBundles();
  const store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_report' });
  await store.migrate();
  for (const [runId, paradigm, shift] of [
    ['report-a', 'standard', 0],
    ['report-b', 'adversarial', 3],
  ] as const) {
    const monitor = createLocalMonitor({ bundles: tb.bundles, store, workers: 1 });
    try {
      await monitor.startRun({ ...testRunSpec(runId, tb.bundleId), paradigm });
      for (const step of STEPS) {
        const cp = testCheckpoint(tb.space, step / 50 + shift);
        await monitor.sendCheckpoint({ ...cp, step });
      }
      await monitor.endRun('completed');
    } finally {
      await monitor.close();
    }
  }
  await store.close();
  const { drainPending } = await import('chdb');
  await drainPending();
  cm = cmWith({
    CM_CHDB_PATH: join(dir, 'store'),
    CM_CLICKHOUSE_DATABASE: 'cm_report',
    CM_BUNDLE_DIR: tb.root,
  });
}, 120_000);

afterAll(() => {
  tb?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** Decode a PNG; its size, and the variance of its grey levels (0 for a blank picture). */
function inspect(file: string): { width: number; height: number; variance: number; distinctColours: number } {
  const png = PNG.sync.read(readFileSync(file));
  let sum = 0;
  let sq = 0;
  const colours = new Set<number>();
  const n = png.width * png.height;
  for (let i = 0; i < n; i++) {
    const [r, g, b] = [png.data[4 * i], png.data[4 * i + 1], png.data[4 * i + 2]];
    const grey = (r + g + b) / 3;
    sum += grey;
    sq += grey * grey;
    if (colours.size < 1000) colours.add((r << 16) | (g << 8) | b);
  }
  const mean = sum / n;
  return {
    width: png.width,
    height: png.height,
    variance: sq / n - mean * mean,
    distinctColours: colours.size,
  };
}

/** "path (W x H)" lines of the command's output. */
function listed(stdout: string): { path: string; width: number; height: number }[] {
  return [...stdout.matchAll(/^(\S+\.png) \((\d+) x (\d+)\)$/gm)].map((m) => ({
    path: m[1],
    width: Number(m[2]),
    height: Number(m[3]),
  }));
}

function expectReport(out: string, stdout: string, layers: string[]): void {
  const pngs = listed(stdout);
  expect(pngs.map((p) => p.path.slice(out.length + 1)).sort()).toEqual(
    [
      'category-shares.png',
      'diversity.png',
      'interpretable-share.png',
      ...layers.map((l) => `concept-map-${l}.png`),
    ].sort(),
  );
  expect(readdirSync(out).sort()).toEqual(
    [...pngs.map((p) => p.path.slice(out.length + 1)), 'index.html'].sort(),
  );
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  for (const p of pngs) {
    const seen = inspect(p.path);
    expect({ file: p.path, width: seen.width, height: seen.height }).toEqual({
      file: p.path,
      width: p.width,
      height: p.height,
    });
    expect(seen.variance).toBeGreaterThan(50); // not blank: lines, text and points on white
    expect(seen.distinctColours).toBeGreaterThan(20);
    // embedded, byte for byte, in the self-contained page
    expect(html).toContain(`data:image/png;base64,${readFileSync(p.path).toString('base64')}`);
  }
  expect(html).not.toMatch(/<script|https?:\/\/(?!127)/); // loads nothing
}

it('writes the figures of one run as PNGs of the stated size, not blank, embedded in index.html', async () => {
  const out = join(dir, 'one');
  const r = await cm(['report', '--run', 'report-a', '--out', out]);
  expect(r.stderr).toContain(`store: chdb ${join(dir, 'store')} (database cm_report)`);
  expect(r.code).toBe(0);
  expectReport(
    out,
    r.stdout,
    TEST_LAYERS.map((l) => l.name),
  );
  const html = readFileSync(join(out, 'index.html'), 'utf8');
  expect(html).toContain('Concept-Monitor report: report-a');
}, 120_000);

it('overlays a compared run in the same figures', async () => {
  const out = join(dir, 'two');
  const r = await cm(['report', '--run', 'report-a', '--compare', 'report-b', '--out', out]);
  expect(r.code).toBe(0);
  expectReport(
    out,
    r.stdout,
    TEST_LAYERS.map((l) => l.name),
  );
  expect(readFileSync(join(out, 'index.html'), 'utf8')).toContain('report-a vs report-b');
}, 120_000);

it('an unknown run is an error that names it, and writes nothing', async () => {
  const out = join(dir, 'none');
  const r = await cm(['report', '--run', "no-such-'run", '--out', out]);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain(`cm: error: unknown run "no-such-'run"`);
  expect(existsSync(out)).toBe(false);
}, 60_000);

it('writes the figures of a `cm demo` run (a real training run, all-in-one into chDB)', async () => {
  const home = mkdtempSync(join(tmpdir(), 'cm-report-demo-'));
  try {
    const inHome = cmWith({ CM_HOME: home, CM_LOG_LEVEL: 'warn' }, 240_000);
    const demo = await inHome([
      'demo',
      '--steps',
      '20',
      '--every',
      '10',
      '--count',
      '240',
      '--probe-images',
      '120',
      '--run-id',
      'report-demo',
      '--no-ui',
    ]);
    expect(demo.code).toBe(0);
    const out = join(home, 'report');
    const r = await inHome(['report', '--run', 'report-demo', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain('note:'); // the demo's bundle is in the home: the map has its concept names
    expectReport(out, r.stdout, ['conv1', 'conv2', 'conv3', 'logits']);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}, 300_000);
