/**
 * Debian's chromium driven by playwright-core, for the browser tests, tools/screenshots.ts and
 * tools/bench/ui.ts. Never a downloaded browser: CM_CHROMIUM or /usr/bin/chromium (tools/setup.sh
 * installs it with apt). Not exported from the package index: only those scripts load playwright.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's chromium (apt), never a downloaded browser. */
export const CHROMIUM = process.env.CM_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  context: BrowserContext;
  /** A new page that records console errors, page errors and requests outside the server. */
  open(url: string): Promise<TestPage>;
  close(): Promise<void>;
}

export interface TestPage {
  page: Page;
  errors: string[];
  /** Requests to anything but the cm ui server (the page must load nothing from the internet). */
  foreign: string[];
  status: number;
}

/** Chromium with a fresh user-data-dir (removed on close). */
export async function launchBrowser(
  opts: { viewport?: { width: number; height: number }; deviceScaleFactor?: number } = {},
): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'cm-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: opts.viewport ?? { width: 1400, height: 1000 },
    deviceScaleFactor: opts.deviceScaleFactor ?? 1,
  });
  return {
    context,
    async open(url: string) {
      const page = await context.newPage();
      const errors: string[] = [];
      const foreign: string[] = [];
      const origin = new URL(url).origin;
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('request', (r) => {
        if (!r.url().startsWith(origin) && !r.url().startsWith('data:')) foreign.push(r.url());
      });
      const res = await page.goto(url, { waitUntil: 'load' });
      return { page, errors, foreign, status: res?.status() ?? 0 };
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Waits until the view has drawn its data (window.cm.ready). A view that failed shows an error page
 * and never becomes ready: the timeout then says what the page showed and what it recorded.
 */
export async function drawn(page: Page, timeout = 30_000): Promise<void> {
  try {
    await page.waitForFunction('window.cm?.ready === true', undefined, { timeout });
  } catch (e) {
    const state = await page
      .evaluate(
        `JSON.stringify({ view: window.cm?.view, errors: window.cm?.errors, banner: document.getElementById('banner')?.textContent, page: document.getElementById('view')?.textContent?.slice(0, 300) })`,
      )
      .catch(() => 'unreadable');
    throw new Error(`${e instanceof Error ? e.message : String(e)}; the page: ${String(state)}`);
  }
}

/** Each series of a chart: id and number of data points, from ECharts' own option. */
export async function seriesOf(page: Page, chart: string): Promise<{ id: string; n: number }[]> {
  return page.evaluate(`(() => {
    const c = window.cm.charts[${JSON.stringify(chart)}];
    if (!c) throw new Error('no chart ' + ${JSON.stringify(chart)});
    return c.getOption().series.map((s) => ({ id: String(s.id), n: s.data.filter((d) => d !== null).length }));
  })()`);
}
