/**
 * The compare page warns when the two runs were scored with different setups (issue 14: "comparisons
 * say so when two runs' setups differ"), naming the fields, and says nothing for equal setups. Real
 * runs of the all-in-one engine into chDB (one with another similarity method and a fixed
 * threshold), the real UI server, Debian's chromium.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CmRecord, RunSetup } from '@cm/contracts';
import { createLocalMonitor, inlineDissector, type LocalMonitorOptions } from '@cm/engine';
import { makeTestBundles, testCheckpoint, testRunSpec, type TestBundles } from '@cm/engine/src/testing';
import { openStore, type Store } from '@cm/store';
import { startUiServer, type UiServer } from '../src';
import { drawn, launchBrowser, type TestBrowser } from '../src/chromium';

const RUN = { base: 'setup-base', same: 'setup-same', other: 'setup-other' } as const;

let dir: string;
let bundles: TestBundles;
let store: Store;
let ui: UiServer;
let browser: TestBrowser;
const at = (p: string): string => ui.url.replace(/\/$/, '') + p;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cm-ui-setup-'));
  bundles = await makeTestBundles();
  store = await openStore({ kind: 'chdb', path: join(dir, 'chdb'), database: 'cm_ui_setup' });
  await store.migrate();
  const target = store;
  const runWith = async (runId: string, dissectOptions?: LocalMonitorOptions['dissectOptions']) => {
    const monitor = createLocalMonitor({
      bundles: bundles.bundles,
      store: target,
      dissector: inlineDissector(),
      dissectOptions,
      sink: { write: async (records: CmRecord[]) => target.insertRecords(records) },
    });
    await monitor.startRun(testRunSpec(runId, bundles.bundleId));
    for (let step = 0; step < 2; step++) await monitor.sendCheckpoint(testCheckpoint(bundles.space, step));
    await monitor.endRun('completed');
    await monitor.close();
  };
  await runWith(RUN.base);
  await runWith(RUN.same);
  await runWith(RUN.other, { method: 'wpmi', threshold: 0.5 });
  ui = await startUiServer({ store, bundles: bundles.bundles, pollMs: 250 });
  browser = await launchBrowser();
}, 240_000);
afterAll(async () => {
  await browser?.close();
  await ui?.close();
  await store?.close();
  bundles?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function setupOf(runId: string): Promise<Record<string, string>> {
  const [r] = await store.query<Record<string, string>>(
    `SELECT setup_method, setup_calibration FROM runs FINAL WHERE run_id = '${runId}'`,
  );
  return r;
}

it('the fixture runs were recorded with the setups the test means', async () => {
  const base = await setupOf(RUN.base);
  const other = await setupOf(RUN.other);
  expect(base.setup_method).toBe('soft_wpmi' satisfies RunSetup['method']);
  expect(other.setup_method).toBe('wpmi');
  expect(other.setup_calibration).toBe('fixed threshold 0.5');
  expect(await setupOf(RUN.same)).toEqual(base);
});

it('warns, naming the fields that differ with both values, when the setups differ', async () => {
  const p = await browser.open(at(`/compare/${RUN.base}/${RUN.other}`));
  await drawn(p.page, 60_000);
  const banner = p.page.locator('#setup-warning');
  expect(await banner.isVisible()).toBe(true);
  expect((await banner.getAttribute('data-fields'))?.split(',')).toEqual([
    'setup_method',
    'setup_params',
    'setup_calibration',
  ]);
  const text = (await banner.textContent()) ?? '';
  expect(text).toContain('Different setups');
  expect(text).toContain('different method, parameters, calibration');
  const method = (await p.page.locator('#setup-warning li[data-field="setup_method"]').textContent()) ?? '';
  expect(method.replace(/\s+/g, ' ')).toBe('method: soft_wpmi vs wpmi');
  const calibration = await p.page.locator('#setup-warning li[data-field="setup_calibration"]').textContent();
  expect(calibration).toContain('fixed threshold 0.5');
  expect(p.errors).toEqual([]);
  expect(p.foreign).toEqual([]);
  // the API carries the same words `cm report --compare` uses
  const api = (await (await fetch(at(`/api/compare/${RUN.other}/${RUN.base}`))).json()) as {
    setupDifferences: { text: string }[];
  };
  expect(api.setupDifferences.map((d) => d.text)).toEqual([
    'method wpmi vs soft_wpmi',
    'parameters',
    expect.stringMatching(/^calibration fixed threshold 0\.5 vs per-concept likelihood null/),
  ]);
  await p.page.close();
}, 60_000);

it('shows no warning when both runs have the same setup', async () => {
  const p = await browser.open(at(`/compare/${RUN.base}/${RUN.same}`));
  await drawn(p.page, 60_000);
  expect(await p.page.locator('#setup-warning').isHidden()).toBe(true);
  expect(await p.page.locator('#setup-warning').getAttribute('data-fields')).toBe('');
  expect(await p.page.locator('#setup-warning li').count()).toBe(0);
  expect(p.errors).toEqual([]);
  await p.page.close();
}, 60_000);
