/**
 * Screenshots of every view of `cm ui`, made by Debian's chromium (playwright-core), for the README
 * and docs/ui.md:
 *
 *   npx tsx tools/screenshots.ts --home DIR [--out docs/images] [--run ID --compare ID --layer conv3]
 *
 * DIR is a CM_HOME that `cm demo` wrote (its store/ and bundles/), for example:
 *   CM_HOME=/tmp/shots npx cm demo --steps 300 --every 20 --run-id standard-demo
 *   CM_HOME=/tmp/shots npx cm demo --paradigm adversarial --steps 300 --every 20 --run-id adversarial-demo
 * Without --run / --compare it takes the newest standard run and the newest other run.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setLogLevel } from '@cm/core';
import { BundleDirectory } from '@cm/probe';
import { openStore } from '@cm/store';
import { startUiServer, type LayerAnswer, type OverviewAnswer, type RunsAnswer } from '@cm/ui';
import { drawn, launchBrowser } from '@cm/ui/src/chromium';

const argText = (name: string, fallback?: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};

async function main(): Promise<void> {
  setLogLevel('warn');
  const home = argText('home');
  if (!home) throw new Error('--home DIR (a CM_HOME written by cm demo) is required');
  const out = resolve(argText('out', 'docs/images')!);
  mkdirSync(out, { recursive: true });
  const store = await openStore({ kind: 'chdb', path: join(home, 'store'), database: 'concept_monitor' });
  // named as a user's default store would be (the temp folder means nothing in a picture)
  const ui = await startUiServer({
    store,
    bundles: new BundleDirectory(join(home, 'bundles')),
    storeName: 'chdb .cm/store (database concept_monitor)',
  });
  const browser = await launchBrowser({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  const base = ui.url.replace(/\/$/, '');
  try {
    const runs = ((await (await fetch(`${base}/api/runs`)).json()) as RunsAnswer).runs;
    const run = argText('run') ?? runs.find((r) => r.paradigm === 'standard')?.runId ?? runs[0].runId;
    const other = argText('compare') ?? runs.find((r) => r.runId !== run)?.runId;
    const layer = argText('layer', 'conv3')!;
    const seg = encodeURIComponent;
    const layerData = (await (
      await fetch(`${base}/api/runs/${seg(run)}/layers/${seg(layer)}`)
    ).json()) as LayerAnswer;
    // steady neurons read best: the fewest distinct concepts over the run (but more than one)
    const steadiness = layerData.heat
      .map((h) => ({ neuron: h.neuron, kinds: new Set(h.concepts.filter((c) => c >= 0)).size }))
      .filter((h) => h.kinds > 1)
      .sort((a, b) => a.kinds - b.kinds || a.neuron - b.neuron);
    const movers = steadiness.slice(0, 3).map((h) => h.neuron);
    const neuron = movers[0] ?? 0;
    // the overview of a run with alert episodes shows them marked on the step axis
    const episodes = async (id: string): Promise<number> =>
      ((await (await fetch(`${base}/api/runs/${seg(id)}`)).json()) as OverviewAnswer).episodes.length;
    const overviewRun = (await episodes(run)) > 0 || !other ? run : (await episodes(other)) > 0 ? other : run;
    const shots: [string, string, number?][] = [
      ['ui-runs', '/', 520],
      ['ui-overview', `/runs/${seg(overviewRun)}`],
      ['ui-layer', `/runs/${seg(run)}/layers/${seg(layer)}`],
      [
        'ui-concept-map',
        `/runs/${seg(run)}/layers/${seg(layer)}/map?trail=${movers.join(',')}${other ? `&overlay=${seg(other)}` : ''}`,
        1000,
      ],
      ['ui-neuron', `/runs/${seg(run)}/layers/${seg(layer)}/neurons/${neuron}`],
    ];
    if (other) shots.push(['ui-compare', `/compare/${seg(run)}/${seg(other)}?layer=${seg(layer)}`]);
    for (const [name, url, height] of shots) {
      const p = await browser.open(base + url);
      await drawn(p.page);
      await p.page.waitForTimeout(400); // ECharts draws on the next frames
      const file = join(out, `${name}.png`);
      await p.page.screenshot({
        path: file,
        fullPage: height === undefined,
        clip: height === undefined ? undefined : { x: 0, y: 0, width: 1440, height },
      });
      if (p.errors.length) throw new Error(`${url}: console errors: ${p.errors.join('; ')}`);
      process.stdout.write(`${file}  (${url})\n`);
      await p.page.close();
    }
  } finally {
    await browser.close();
    await ui.close();
    await store.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
