import type { MapAnswer, MapPoint, RunsAnswer } from '../../src/api-types';
import { escapeHtml, getJson, path } from '../api';
import { axisStyle, categoryColour, chartIn, SERIES_COLOURS, type Option } from '../charts';
import { queryParam, replaceQuery } from '../router';
import { showThinned, THINNED_NOTE, type View } from './view';

declare global {
  interface Window {
    /** ms from handing the map its data to ECharts' 'finished' (the last draw). */
    cmMapRenderMs?: number;
  }
}

const byCategory = (points: MapPoint[]): Map<string, MapPoint[]> => {
  const out = new Map<string, MapPoint[]>();
  for (const p of points) {
    if (!out.has(p.category)) out.set(p.category, []);
    out.get(p.category)!.push(p);
  }
  return new Map([...out.entries()].sort(([a], [b]) => a.localeCompare(b)));
};

export function mapView(root: HTMLElement, runId: string, layer: string): View {
  root.innerHTML = `<div class="page-head"><div><h1 id="title">Concept map</h1><p class="sub" id="sub"></p></div>
<div class="actions"><a class="button" href="${path('runs', runId, 'layers', layer)}" data-link>Layer view</a></div></div>${THINNED_NOTE}
<section class="card map-card">
  <div class="controls">
    <button id="play" class="primary" title="play the steps">▶ Play</button>
    <label class="slider">step <b id="step-label"></b><input type="range" id="step" min="0" max="0" value="0"></label>
    <label>overlay run <select id="overlay"><option value="">none</option></select></label>
    <span id="trail" class="trail"></span>
  </div>
  <div class="body chart" data-chart="map" id="map" style="height:640px"></div>
  <p class="note" id="map-note">Each dot is a neuron at its place on the bundle’s fixed map of concept space (grey: concept names). Click a neuron to draw its trajectory.</p>
</section>`;
  const slider = root.querySelector<HTMLInputElement>('#step')!;
  const stepLabel = root.querySelector<HTMLElement>('#step-label')!;
  const play = root.querySelector<HTMLButtonElement>('#play')!;
  const overlaySelect = root.querySelector<HTMLSelectElement>('#overlay')!;
  const trailEl = root.querySelector<HTMLElement>('#trail')!;
  const chart = chartIn(root.querySelector<HTMLElement>('#map')!, 'map');
  let steps: number[] = [];
  let step: number | undefined = queryParam('step') !== undefined ? Number(queryParam('step')) : undefined;
  let trail = (queryParam('trail') ?? '').split(',').filter(Boolean).map(Number);
  let overlay = queryParam('overlay') ?? '';
  let timer: number | undefined;
  let loading = false;

  void getJson<RunsAnswer>('/api/runs')
    .then((runs) => {
      overlaySelect.innerHTML =
        '<option value="">none</option>' +
        runs.runs
          .filter((r) => r.runId !== runId)
          .map(
            (r) =>
              `<option value="${escapeHtml(r.runId)}">${escapeHtml(r.runId)} (${escapeHtml(r.paradigm)})</option>`,
          )
          .join('');
      overlaySelect.value = overlay;
    })
    .catch(() => undefined);

  const load = async (): Promise<void> => {
    const q = new URLSearchParams();
    if (step !== undefined) q.set('step', String(step));
    if (trail.length) q.set('trail', trail.join(','));
    if (overlay) q.set('overlay', overlay);
    const d = await getJson<MapAnswer>(`/api${path('runs', runId, 'layers', layer, 'map')}?${q}`);
    showThinned(root, d.run.thinned, 'the step slider offers only the checkpoints that kept their labels.');
    draw(d);
  };

  const draw = (d: MapAnswer): void => {
    steps = d.steps;
    slider.max = String(Math.max(0, steps.length - 1));
    slider.value = String(Math.max(0, steps.indexOf(d.step)));
    stepLabel.textContent = String(d.step);
    root.querySelector('#title')!.textContent = `Concept map · ${d.layer.name}`;
    root.querySelector('#sub')!.innerHTML =
      `${escapeHtml(runId)} · step ${d.step} · ${d.points.length} neurons${
        d.overlay ? ` · overlay ${escapeHtml(d.overlay.run.runId)} at step ${d.overlay.step} (◇)` : ''
      }`;
    root.querySelector('#map-note')!.textContent =
      d.conceptsNote ??
      'Each dot is a neuron at its place on the bundle’s fixed map of concept space (grey: concept names). Click a neuron to draw its trajectory.';
    trailEl.innerHTML = trail.length
      ? `trajectories: ${trail.map((n) => `<button class="chip" data-neuron="${n}">n${n} ×</button>`).join('')}<button class="chip" data-neuron="all">clear</button>`
      : '<span class="muted">click neurons to draw their trajectories</span>';
    const series: NonNullable<Option['series']> = [
      {
        id: 'concepts',
        name: 'concepts',
        type: 'scatter',
        symbolSize: 4,
        silent: true,
        z: 1,
        itemStyle: { color: '#c4cad3' },
        label: { show: true, formatter: '{b}', position: 'right', fontSize: 10, color: '#7a8290' },
        labelLayout: { hideOverlap: true },
        data: d.concepts.map((c) => ({ name: c.concept, value: [c.x, c.y] })),
      },
    ];
    for (const [category, points] of byCategory(d.points))
      series.push({
        id: `neurons:${category}`,
        name: category,
        type: 'scatter',
        symbolSize: 9,
        z: 3,
        large: points.length > 4000,
        itemStyle: { color: categoryColour(category), opacity: 0.85, borderColor: '#fff', borderWidth: 0.5 },
        data: points.map((p) => ({
          name: `n${p.neuron}`,
          value: [p.x, p.y, p.neuron, p.score],
          concept: p.concept,
        })),
      });
    if (d.overlay)
      series.push({
        id: 'overlay',
        name: `${d.overlay.run.runId} (overlay)`,
        type: 'scatter',
        symbol: 'diamond',
        symbolSize: 10,
        z: 2,
        itemStyle: { color: 'rgba(0,0,0,0)', borderColor: '#222', borderWidth: 1.2 },
        data: d.overlay.points.map((p) => ({
          name: `n${p.neuron}`,
          value: [p.x, p.y, p.neuron, p.score],
          concept: p.concept,
          itemStyle: { borderColor: categoryColour(p.category) },
        })),
      });
    d.paths.forEach((p, i) => {
      const colour = SERIES_COLOURS[i % SERIES_COLOURS.length];
      series.push({
        id: `path:${p.neuron}`,
        name: `n${p.neuron} path`,
        type: 'line',
        z: 4,
        symbolSize: 4,
        lineStyle: { width: 1.8, color: colour, opacity: 0.85 },
        itemStyle: { color: colour },
        data: p.points
          .filter((x) => x.step <= d.step)
          .map((x) => ({ value: [x.x, x.y], name: `step ${x.step}: ${x.concept}` })),
        endLabel: { show: true, formatter: `n${p.neuron}`, fontSize: 11, fontWeight: 'bold', color: colour },
      });
    });
    const option: Option = {
      animation: false,
      legend: { top: 4, left: 8, type: 'scroll', data: [...byCategory(d.points).keys()] },
      tooltip: {
        formatter: (p) => {
          const item = p as { seriesId?: string; name: string; data: { concept?: string; value: number[] } };
          if (item.seriesId?.startsWith('path:')) return escapeHtml(item.name);
          return `<b>${escapeHtml(item.name)}</b> ${escapeHtml(item.data.concept ?? '')}<br>score ${Number(item.data.value[3] ?? 0).toFixed(3)}`;
        },
      },
      grid: { left: 40, right: 24, top: 40, bottom: 30 },
      // wheel to zoom, drag to pan: the centre of the map is dense
      dataZoom: [
        { type: 'inside', xAxisIndex: 0, filterMode: 'none' },
        { type: 'inside', yAxisIndex: 0, filterMode: 'none' },
      ],
      xAxis: { type: 'value', scale: true, ...axisStyle },
      yAxis: { type: 'value', scale: true, ...axisStyle },
      series,
    };
    const t0 = performance.now();
    chart.off('finished');
    chart.on('finished', () => {
      window.cmMapRenderMs = performance.now() - t0;
      chart.off('finished');
    });
    chart.setOption(option, { notMerge: true });
  };

  const goTo = async (index: number): Promise<void> => {
    if (steps.length === 0) return;
    step = steps[Math.max(0, Math.min(steps.length - 1, index))];
    replaceQuery({ step: String(step) });
    await load();
  };

  slider.addEventListener('input', () => void goTo(Number(slider.value)));
  overlaySelect.addEventListener('change', () => {
    overlay = overlaySelect.value;
    replaceQuery({ overlay: overlay || undefined });
    void load();
  });
  trailEl.addEventListener('click', (ev) => {
    const n = (ev.target as HTMLElement).dataset.neuron;
    if (n === undefined) return;
    trail = n === 'all' ? [] : trail.filter((x) => String(x) !== n);
    replaceQuery({ trail: trail.join(',') || undefined });
    void load();
  });
  chart.on('click', (p) => {
    const v = p.value as number[] | undefined;
    if (!p.seriesId?.startsWith('neurons:') || !Array.isArray(v)) return;
    const neuron = v[2];
    trail = trail.includes(neuron) ? trail.filter((x) => x !== neuron) : [...trail, neuron];
    replaceQuery({ trail: trail.join(',') || undefined });
    void load();
  });
  const stop = (): void => {
    window.clearInterval(timer);
    timer = undefined;
    play.textContent = '▶ Play';
  };
  play.addEventListener('click', () => {
    if (timer !== undefined) return stop();
    play.textContent = '❚❚ Pause';
    let index = Number(slider.value);
    if (index >= steps.length - 1) index = -1;
    timer = window.setInterval(() => {
      if (loading) return;
      index++;
      if (index >= steps.length) return stop();
      loading = true;
      void goTo(index).finally(() => (loading = false));
    }, 500);
  });
  return {
    refresh: load,
    dispose: stop,
  };
}
