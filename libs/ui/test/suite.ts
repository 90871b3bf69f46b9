import { PNG } from 'pngjs';
import { sqlString, thinLabels } from '@cm/store';
import * as Q from '@cm/queries';
import { startUiServer, type SwitchingAnswer, type UiServer } from '../src';
import { drawn, launchBrowser, seriesOf, type TestBrowser } from '../src/chromium';
import { fillStore, RUNS, STEPS, type FilledStore } from './fixtures';

/**
 * The web view in a real browser (Debian's chromium via playwright-core) against a store filled by
 * real engine runs; the same checks on chDB and on clickhouse-server 18.16 (one file each, one
 * browser per file). Chart sizes are read from ECharts' getOption() and compared with COUNT queries.
 */
export function uiSuite(kind: 'chdb' | 'clickhouse-server'): void {
  jest.setTimeout(90_000);
  let filled: FilledStore;
  let ui: UiServer;
  let browser: TestBrowser;
  const at = (p: string): string => ui.url.replace(/\/$/, '') + p;
  const seg = encodeURIComponent;
  const count = async (sql: string): Promise<number> => {
    const [r] = await filled.store.query<{ n: string | number }>(sql);
    return Number(r.n);
  };

  beforeAll(async () => {
    filled = await fillStore(kind);
    ui = await startUiServer({ store: filled.store, bundles: filled.bundles.bundles, pollMs: 250 });
    browser = await launchBrowser();
    // the first page pays for the cold browser and the store's first queries (slow on a loaded
    // 2-core machine): a warm-up, not any test's time budget
    const warm = await browser.open(at('/'));
    await drawn(warm.page, 60_000);
    await warm.page.close();
  }, 240_000);
  afterAll(async () => {
    await browser?.close();
    await ui?.close();
    await filled?.close();
  });

  const expectClean = (p: { errors: string[]; foreign: string[] }): void => {
    expect(p.errors).toEqual([]);
    expect(p.foreign).toEqual([]);
  };

  it('runs: every run with paradigm, status, last step and health; nothing loaded from outside', async () => {
    const p = await browser.open(at('/'));
    await drawn(p.page);
    const rows = await p.page.$$eval('#runs-table tbody tr', (trs) =>
      trs.map((tr) => ({
        run: tr.getAttribute('data-run'),
        cells: [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim()),
      })),
    );
    expect(rows.map((r) => r.run).sort()).toEqual(Object.values(RUNS).sort());
    expect(rows.length).toBe(await count('SELECT count() AS n FROM runs FINAL'));
    const collapse = rows.find((r) => r.run === RUNS.collapse)!;
    expect(collapse.cells.slice(2, 6)).toEqual(['adversarial', 'tiny-cnn', 'completed', String(STEPS - 1)]);
    expect(rows.find((r) => r.run === RUNS.live)!.cells[4]).toBe('running');
    // pick two: the compare link opens the comparison
    await p.page.check(`input[value="${RUNS.collapse}"]`);
    await p.page.check(`input[value="${RUNS.healthy}"]`);
    await p.page.click('#compare');
    await p.page.waitForURL(/\/compare\//);
    await drawn(p.page);
    expect(await p.page.evaluate('window.cm.view')).toBe('compare');
    expectClean(p);
    await p.page.close();
  });

  it('run overview: loss/accuracy and seven layer metrics (learned concepts first) hold one point per stored row; episodes marked', async () => {
    const p = await browser.open(at(`/runs/${seg(RUNS.collapse)}`));
    expect(p.status).toBe(200);
    await drawn(p.page);
    const training = await seriesOf(p.page, 'training');
    const metricRows = await count(
      `SELECT count() AS n FROM checkpoints FINAL ARRAY JOIN metrics WHERE run_id = ${sqlString(RUNS.collapse)} AND metrics.name IN ('loss', 'accuracy')`,
    );
    expect(training.reduce((a, s) => a + s.n, 0)).toBe(metricRows);
    expect(metricRows).toBe(2 * STEPS);
    const perLayer = await filled.store.query<{ layer: string; n: string }>(
      `SELECT layer, count() AS n FROM layer_metrics FINAL WHERE run_id = ${sqlString(RUNS.collapse)} GROUP BY layer`,
    );
    for (const chart of [
      'learned',
      'interpretable',
      'distinctShare',
      'entropy',
      'spread',
      'dead',
      'switchRate',
    ]) {
      const series = await seriesOf(p.page, chart);
      expect(Object.fromEntries(series.map((s) => [s.id.split(':')[1], s.n]))).toEqual(
        Object.fromEntries(perLayer.map((r) => [r.layer, Number(r.n)])),
      );
    }
    // the learned-concept chart comes first, then the association one under its own name
    const titles = await p.page.$$eval('.chart-card h2', (hs) => hs.map((h) => h.textContent?.trim()));
    expect(titles.slice(1, 3)).toEqual(['Learned concepts', 'Association with P (shuffle null)']);
    const learned = await p.page.evaluate(
      `window.cm.charts.learned.getOption().series.map((s) => s.data.map((d) => d[1]))`,
    );
    const stored = await filled.store.query<{ layer: string; f: number }>(
      `SELECT layer, learned_fraction AS f FROM layer_metrics FINAL WHERE run_id = ${sqlString(RUNS.collapse)} ORDER BY layer, step`,
    );
    expect((learned as number[][]).flat().sort()).toEqual(stored.map((r) => Number(r.f)).sort());
    // a run without a baseline: the learned chart holds no points (NULL is not 0)
    const healthy = await browser.open(at(`/runs/${seg(RUNS.healthy)}`));
    await drawn(healthy.page);
    const nulls = await healthy.page.evaluate(
      `window.cm.charts.learned.getOption().series.flatMap((s) => s.data.map((d) => d[1]))`,
    );
    expect((nulls as unknown[]).length).toBeGreaterThan(0);
    expect((nulls as unknown[]).every((v) => v === null)).toBe(true);
    expect((await seriesOf(healthy.page, 'interpretable')).every((s) => s.n > 0)).toBe(true);
    await healthy.page.close();
    const episodes = await count(
      `SELECT uniqExact(alert_id) AS n FROM alerts FINAL WHERE run_id = ${sqlString(RUNS.collapse)}`,
    );
    expect(episodes).toBeGreaterThan(0);
    const bands = await p.page.evaluate(
      `window.cm.charts.training.getOption().series[0].markArea?.data.length ?? 0`,
    );
    expect(bands).toBe(episodes);
    expect(await p.page.$$eval('#episodes tbody tr', (r) => r.length)).toBe(episodes);
    expectClean(p);
    await p.page.close();
  });

  it('layer view: the heat strip has a cell per label row, shares a point per stored share', async () => {
    const p = await browser.open(at(`/runs/${seg(RUNS.collapse)}/layers/conv2`));
    await drawn(p.page);
    const [heat] = await seriesOf(p.page, 'heat');
    expect(heat.n).toBe(
      await count(
        `SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = ${sqlString(RUNS.collapse)} AND layer = 'conv2'`,
      ),
    );
    expect(heat.n).toBe(STEPS * 12);
    // every stored share is drawn; a category absent at a step is a 0 there (a stack without holes)
    const shares = await seriesOf(p.page, 'shares');
    const stored = await count(
      `SELECT count() AS n FROM layer_metrics FINAL ARRAY JOIN category_shares WHERE run_id = ${sqlString(RUNS.collapse)} AND layer = 'conv2'`,
    );
    expect(Number(await p.page.getAttribute('[data-chart="shares"]', 'data-rows'))).toBe(stored);
    const categories = await count(
      `SELECT uniqExact(category_shares.category) AS n FROM layer_metrics FINAL ARRAY JOIN category_shares WHERE run_id = ${sqlString(RUNS.collapse)} AND layer = 'conv2'`,
    );
    const shareSteps = await count(
      `SELECT uniqExact(step) AS n FROM layer_metrics FINAL ARRAY JOIN category_shares WHERE run_id = ${sqlString(RUNS.collapse)} AND layer = 'conv2'`,
    );
    expect(shares).toHaveLength(categories);
    for (const s of shares) expect(s.n).toBe(shareSteps);
    expect(await p.page.$$eval('#switching tbody tr', (r) => r.length)).toBeGreaterThan(0);
    // the engine records each row's previous concept: the table reads the switches (no fallback
    // note), and says what each neuron's sequence of stored labels says
    expect(await p.page.$('#switching-from')).toBeNull();
    const switching = (await (
      await fetch(at(`/api/runs/${seg(RUNS.collapse)}/layers/conv2/switching`))
    ).json()) as SwitchingAnswer;
    expect(switching.from).toBe('recorded');
    const rebuilt = await filled.store.query<{ neuron: number; switches: string; concepts: string }>(
      Q.switchingNeuronsFromSequencesSql({ run: RUNS.collapse, layer: 'conv2', limit: 15 }),
    );
    expect(switching.switching).toEqual(
      rebuilt.map((r) => ({ neuron: Number(r.neuron), switches: Number(r.switches), concepts: r.concepts })),
    );
    expect(switching.switching.some((r) => r.switches > 0)).toBe(true);
    // a neuron link opens the neuron view
    await p.page.click('#switching tbody tr a');
    await p.page.waitForURL(/\/neurons\/\d+$/);
    await drawn(p.page);
    expect(await p.page.evaluate('window.cm.view')).toBe('neuron');
    expectClean(p);
    await p.page.close();
  });

  it('concept map: every neuron of the layer at the step, the bundle’s concepts, trajectories, a second run overlaid', async () => {
    const step = 4;
    const p = await browser.open(
      at(`/runs/${seg(RUNS.collapse)}/layers/conv1/map?step=${step}&trail=1,3&overlay=${seg(RUNS.healthy)}`),
    );
    await drawn(p.page);
    const series = await seriesOf(p.page, 'map');
    const neurons = series.filter((s) => s.id.startsWith('neurons:')).reduce((a, s) => a + s.n, 0);
    const atStep = `SELECT count() AS n FROM neuron_labels FINAL WHERE layer = 'conv1' AND step = ${step} AND run_id = `;
    expect(neurons).toBe(await count(atStep + sqlString(RUNS.collapse)));
    expect(neurons).toBe(8);
    expect(series.find((s) => s.id === 'overlay')!.n).toBe(await count(atStep + sqlString(RUNS.healthy)));
    expect(series.find((s) => s.id === 'concepts')!.n).toBe(
      filled.bundles.bundles.get(filled.bundles.bundleId).space.concepts.length,
    );
    expect(series.filter((s) => s.id.startsWith('path:')).map((s) => [s.id, s.n])).toEqual([
      ['path:1', step + 1],
      ['path:3', step + 1],
    ]);
    // the slider moves to another step in place
    await p.page.evaluate(`(() => {
      const s = document.querySelector('#step');
      s.value = '0';
      s.dispatchEvent(new Event('input'));
    })()`);
    await p.page.waitForFunction(`new URLSearchParams(location.search).get('step') === '0'`);
    await p.page.waitForFunction(`document.querySelector('#step-label')?.textContent === '0'`);
    expectClean(p);
    await p.page.close();
  });

  it('neuron view: top-5 concepts over steps, and its probe images (or says there is no evidence)', async () => {
    const p = await browser.open(at(`/runs/${seg(RUNS.healthy)}/layers/conv2/neurons/3`));
    await drawn(p.page);
    const history = await count(
      `SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = ${sqlString(RUNS.healthy)} AND layer = 'conv2' AND neuron = 3`,
    );
    expect((await seriesOf(p.page, 'score'))[0].n).toBe(history);
    expect((await seriesOf(p.page, 'top5')).length).toBeGreaterThanOrEqual(5);
    const [col] = await filled.store.query<{ n: string }>(
      `SELECT count() AS n FROM system.columns WHERE database = currentDatabase() AND table = 'neuron_labels' AND name = 'top_images'`,
    );
    if (Number(col.n) > 0) {
      const [last] = await filled.store.query<{ top_images: number[] }>(
        `SELECT top_images FROM neuron_labels FINAL WHERE run_id = ${sqlString(RUNS.healthy)} AND layer = 'conv2' AND neuron = 3 ORDER BY step DESC LIMIT 1`,
      );
      if (last.top_images.length > 0) {
        await p.page.waitForFunction(
          `[...document.querySelectorAll('#thumbs img')].every((i) => i.complete && i.naturalWidth === 96)`,
        );
        expect(await p.page.$$eval('#thumbs img', (imgs) => imgs.length)).toBe(last.top_images.length);
      } else expect(await p.page.textContent('#no-evidence')).toMatch(/no evidence stored for this run/);
    } else expect(await p.page.textContent('#no-evidence')).toMatch(/no evidence stored for this run/);
    expectClean(p);
    await p.page.close();
  });

  it('compare: both runs’ layer metrics overlaid by step, category shares side by side', async () => {
    const p = await browser.open(at(`/compare/${seg(RUNS.collapse)}/${seg(RUNS.healthy)}?layer=conv2`));
    await drawn(p.page);
    const interpretable = await seriesOf(p.page, 'compare-interpretable');
    expect(interpretable.map((s) => s.n)).toEqual([STEPS, STEPS]);
    const loss = await seriesOf(p.page, 'compare-loss');
    expect(loss.map((s) => s.n)).toEqual([STEPS, STEPS]);
    const shares = await seriesOf(p.page, 'compare-shares');
    expect(shares).toHaveLength(2);
    const categories = await count(
      `SELECT uniqExact(category_shares.category) AS n FROM layer_metrics FINAL ARRAY JOIN category_shares WHERE layer = 'conv2' AND run_id IN (${sqlString(RUNS.collapse)}, ${sqlString(RUNS.healthy)}) AND step = ${STEPS - 1}`,
    );
    expect(shares[0].n).toBe(categories);
    expectClean(p);
    await p.page.close();
  });

  it('live: a checkpoint written while the page is open shows within 2 s, without a reload', async () => {
    const p = await browser.open(at(`/runs/${seg(RUNS.live)}`));
    await drawn(p.page);
    const before = (await seriesOf(p.page, 'training')).map((s) => s.n);
    await p.page.evaluate('window.marker = 42');
    const step = await filled.addLiveCheckpoint();
    const landed = Date.now();
    await p.page.waitForFunction(
      `window.cm.charts.training.getOption().series[0].data.length > ${before[0]}`,
      undefined,
      { timeout: 2000, polling: 50 },
    );
    const elapsed = Date.now() - landed;
    expect(elapsed).toBeLessThan(2000);
    expect((await seriesOf(p.page, 'training')).map((s) => s.n)).toEqual(before.map((n) => n + 1));
    expect(await p.page.evaluate('window.marker')).toBe(42); // no reload
    expect(await p.page.textContent('#stats')).toContain(String(step));
    expectClean(p);
    await p.page.close();
  });

  it('navigating while the old view is still refetching: the new view draws, the late answer is dropped', async () => {
    const p = await browser.open(at('/'));
    await drawn(p.page);
    // hold the runs view's next refetch (the one a live change token starts) until after the click
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let heldRequests = 0;
    await p.page.route('**/api/runs', async (route) => {
      heldRequests++;
      await held;
      await route.continue();
    });
    await filled.addLiveCheckpoint();
    const start = Date.now();
    while (heldRequests === 0 && Date.now() - start < 15_000) await new Promise((r) => setTimeout(r, 50));
    expect(heldRequests).toBeGreaterThan(0);
    await p.page.check(`input[value="${RUNS.collapse}"]`);
    await p.page.check(`input[value="${RUNS.healthy}"]`);
    await p.page.click('#compare');
    await p.page.waitForURL(/\/compare\//);
    release(); // the runs answer arrives now, for a page that shows the comparison
    await drawn(p.page, 15_000);
    expect(await p.page.evaluate('window.cm.view')).toBe('compare');
    expect(await p.page.$('#runs-table')).toBeNull();
    expect(await p.page.$('#setup-warning')).not.toBeNull();
    expect(await p.page.$('.error-page')).toBeNull();
    expectClean(p);
    await p.page.close();
  });

  it('404: an unknown run, layer or neuron gives a page naming it, and JSON naming it', async () => {
    const cases: [string, string, string][] = [
      [`/runs/no-such-run`, 'run', 'no-such-run'],
      [`/runs/${seg(RUNS.healthy)}/layers/conv9`, 'layer', 'conv9'],
      [`/runs/${seg(RUNS.healthy)}/layers/conv2/neurons/999`, 'neuron', '999'],
      [`/runs/${seg(RUNS.healthy)}/layers/conv2/neurons/abc`, 'neuron', 'abc'],
      [`/runs/${seg(RUNS.healthy)}/layers/conv9/map`, 'layer', 'conv9'],
    ];
    for (const [url, kind, value] of cases) {
      const p = await browser.open(at(url));
      expect(p.status).toBe(404);
      expect(await p.page.textContent('.missing')).toBe(`Unknown ${kind}: ${value}`);
      await p.page.close();
      const api = await fetch(at(`/api${url}`));
      expect(api.status).toBe(404);
      expect(((await api.json()) as { missing: unknown }).missing).toEqual({ kind, value });
    }
    // navigating inside the page to an unknown neuron shows the same message in place
    const p = await browser.open(at(`/runs/${seg(RUNS.healthy)}`));
    await drawn(p.page);
    await p.page.evaluate(`(() => {
      history.pushState(null, '', '/runs/healthy-run/layers/fc/neurons/77');
      window.dispatchEvent(new Event('cm:navigate'));
    })()`);
    await p.page.waitForSelector('.error-page .missing');
    expect(await p.page.textContent('.missing')).toBe('Unknown neuron: 77');
    await p.page.close();
  });

  it("escaping: quotes, backslashes and '; DROP in URLs reach SQL as literals", async () => {
    const runsBefore = await count('SELECT count() AS n FROM runs FINAL');
    const p = await browser.open(at(`/runs/${seg(RUNS.hostile)}`));
    expect(p.status).toBe(200);
    await drawn(p.page);
    expect(await p.page.textContent('#title')).toBe(RUNS.hostile);
    expect((await seriesOf(p.page, 'training')).reduce((a, s) => a + s.n, 0)).toBe(8);
    expectClean(p);
    await p.page.close();
    const layerPage = await browser.open(at(`/runs/${seg(RUNS.hostile)}/layers/conv1`));
    await drawn(layerPage.page);
    expect((await seriesOf(layerPage.page, 'heat'))[0].n).toBe(4 * 8);
    expectClean(layerPage);
    await layerPage.page.close();
    for (const evil of ["x'; DROP TABLE neuron_labels; --", "\\'; DROP TABLE runs; --", 'a\\', "'"]) {
      for (const url of [
        `/api/runs/${seg(evil)}`,
        `/api/runs/${seg(RUNS.hostile)}/layers/${seg(evil)}`,
        `/api/runs/${seg(RUNS.hostile)}/layers/${seg(evil)}/switching`,
        `/api/runs/${seg(RUNS.hostile)}/layers/conv1/map?overlay=${seg(evil)}`,
        `/api/compare/${seg(evil)}/${seg(RUNS.healthy)}`,
      ]) {
        const res = await fetch(at(url));
        expect(res.status).toBe(404);
        expect(((await res.json()) as { missing: { value: string } }).missing.value).toBe(evil);
      }
      const res = await fetch(at(`/api/runs/${seg(RUNS.hostile)}/layers/conv1/map?step=${seg(evil)}`));
      expect(res.status).toBe(404);
    }
    expect(await count('SELECT count() AS n FROM runs FINAL')).toBe(runsBefore);
    expect(await count('SELECT count() AS n FROM neuron_labels FINAL')).toBeGreaterThan(0);
  });

  it('retention: a thinned run says so on its overview, layer and neuron pages; the charts hold what remains', async () => {
    // a month from now every label row of the hostile run is old: every 2nd checkpoint stays
    const later = new Date(Date.now() + 30 * 24 * 3600_000);
    const policy = { fullDays: 1, fullCheckpoints: 0, keepEvery: 2 };
    const { plan, records } = await thinLabels(filled.store, policy, { now: later, run: RUNS.hostile });
    expect(plan).toHaveLength(1);
    expect(plan[0].throughStep).toBe(2); // step 3 is the run's last
    expect(plan[0].removeSteps.length).toBeGreaterThan(0);
    expect(records).toHaveLength(1);
    const note = 'Thinned by label retention (labels: every 2nd checkpoint up to step 2)';
    const run = `/runs/${seg(RUNS.hostile)}`;
    const overview = await browser.open(at(run));
    await drawn(overview.page);
    expect(await overview.page.isVisible('#thinned')).toBe(true);
    expect(await overview.page.textContent('#thinned')).toContain(note);
    // layer metrics are never thinned: the overview still has a point per checkpoint
    expect((await seriesOf(overview.page, 'interpretable')).find((x) => x.id.endsWith(':conv1'))!.n).toBe(4);
    expectClean(overview);
    await overview.page.close();
    const layerPage = await browser.open(at(`${run}/layers/conv1`));
    await drawn(layerPage.page);
    expect(await layerPage.page.textContent('#thinned')).toContain(note);
    const remaining = await count(
      `SELECT count() AS n FROM neuron_labels FINAL WHERE run_id = ${sqlString(RUNS.hostile)} AND layer = 'conv1'`,
    );
    expect(remaining).toBe(8 * (4 - plan[0].removeSteps.length));
    expect((await seriesOf(layerPage.page, 'heat'))[0].n).toBe(remaining);
    expectClean(layerPage);
    await layerPage.page.close();
    const neuronPage = await browser.open(at(`${run}/layers/conv1/neurons/2`));
    await drawn(neuronPage.page);
    expect(await neuronPage.page.textContent('#thinned')).toContain(note);
    expect((await seriesOf(neuronPage.page, 'score'))[0].n).toBe(4 - plan[0].removeSteps.length);
    expectClean(neuronPage);
    await neuronPage.page.close();
    // the concept map's slider offers only the steps that kept their labels, each a full map
    const keptSteps = [0, 1, 2, 3].filter((st) => !plan[0].removeSteps.includes(st));
    const mapPage = await browser.open(at(`${run}/layers/conv1/map`));
    await drawn(mapPage.page);
    expect(await mapPage.page.textContent('#thinned')).toContain('the step slider offers only');
    expect(await mapPage.page.getAttribute('#step', 'max')).toBe(String(keptSteps.length - 1));
    expect(await mapPage.page.textContent('#step-label')).toBe(String(keptSteps.at(-1)));
    for (const [index, step] of keptSteps.entries()) {
      await mapPage.page.evaluate(`(() => {
        const s = document.querySelector('#step');
        s.value = '${index}';
        s.dispatchEvent(new Event('input'));
      })()`);
      await mapPage.page.waitForFunction(`document.querySelector('#step-label')?.textContent === '${step}'`);
      await mapPage.page.waitForFunction(
        `new URLSearchParams(location.search).get('step') === '${step}' && /· 8 neurons/.test(document.querySelector('#sub')?.textContent ?? '')`,
      );
      await drawn(mapPage.page);
      const dots = (await seriesOf(mapPage.page, 'map'))
        .filter((x) => x.id.startsWith('neurons:'))
        .reduce((a, x) => a + x.n, 0);
      expect({ step, dots }).toEqual({ step, dots: 8 });
    }
    expectClean(mapPage);
    await mapPage.page.close();
    // a thinned step asked by URL: 404 that says why and where the labels are
    const removed = plan[0].removeSteps[0];
    const api = await fetch(at(`/api${run}/layers/conv1/map?step=${removed}`));
    expect(api.status).toBe(404);
    const body = (await api.json()) as { missing: unknown; hint: string };
    expect(body.missing).toEqual({ kind: 'step', value: String(removed) });
    expect(body.hint).toMatch(new RegExp(`labels of step ${removed} were removed by label retention`));
    // a run that was not thinned shows no note
    const healthy = await browser.open(at(`/runs/${seg(RUNS.healthy)}/layers/conv2`));
    await drawn(healthy.page);
    expect(await healthy.page.isVisible('#thinned')).toBe(false);
    await healthy.page.close();
  });

  it('probe images: a PNG thumbnail by bundle id and index; unknown bundle or index is 404', async () => {
    const id = filled.bundles.bundleId;
    const res = await fetch(at(`/api/bundles/${id}/images/0?size=64`));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    const png = PNG.sync.read(Buffer.from(await res.arrayBuffer()));
    expect([png.width, png.height]).toEqual([64, 64]);
    const values = new Set<number>();
    for (let i = 0; i < png.data.length; i += 4)
      values.add(png.data[i] * 65536 + png.data[i + 1] * 256 + png.data[i + 2]);
    expect(values.size).toBeGreaterThan(1);
    const images = filled.bundles.bundles.get(id).imageShape[0];
    expect((await fetch(at(`/api/bundles/${id}/images/${images}`))).status).toBe(404);
    expect((await fetch(at(`/api/bundles/ffffffffffffffff/images/0`))).status).toBe(404);
    expect((await fetch(at(`/api/bundles/${seg("'; DROP")}/images/0`))).status).toBe(404);
  });

  if (kind === 'clickhouse-server')
    it('store unreachable: the page says so and retries', async () => {
      const p = await browser.open(at(`/runs/${seg(RUNS.healthy)}`));
      await drawn(p.page);
      let apiCalls = 0;
      p.page.on('request', (r) => {
        if (r.url().includes('/api/runs/')) apiCalls++;
      });
      await filled.server!.stop();
      // a fresh load while the store is down: the shell, then the banner, then retries
      await p.page.reload();
      await p.page.waitForSelector('#banner:not([hidden])', { timeout: 10_000 });
      expect(await p.page.textContent('#banner')).toMatch(/store cannot be reached.*Retrying/);
      await p.page.waitForTimeout(4500);
      expect(apiCalls).toBeGreaterThanOrEqual(3);
      const api = await fetch(at('/api/runs'));
      expect(api.status).toBe(503);
      expect(((await api.json()) as { unavailable: boolean }).unavailable).toBe(true);
      await p.page.close();
    });
}
