import type { LayerCurvePoint, OverviewAnswer } from '../../src/api-types';
import { escapeHtml, fmt, getJson, path, pct } from '../api';
import { axisStyle, baseGrid, chartIn, episodeBands, SERIES_COLOURS, type Option, stepAxis } from '../charts';
import { chartBox, showThinned, THINNED_NOTE, type View } from './view';

type Metric = { key: keyof LayerCurvePoint; title: string; note: string; share: boolean };
export const LAYER_METRICS: Metric[] = [
  {
    key: 'learned',
    title: 'Learned concepts',
    note: 'neurons interpretable beyond the same layer at random initialisation (empty until the architecture has a baseline)',
    share: true,
  },
  {
    key: 'interpretable',
    title: 'Association with P (shuffle null)',
    note: 'neurons whose top concept beats activations shuffled across images; random filters pass this too',
    share: true,
  },
  {
    key: 'distinctShare',
    title: 'Diversity: distinct-concept share',
    note: 'distinct concepts / interpretable neurons',
    share: true,
  },
  {
    key: 'entropy',
    title: 'Diversity: label entropy',
    note: 'entropy of the layer’s labels, normalised to 0..1',
    share: false,
  },
  {
    key: 'spread',
    title: 'Diversity: embedding spread',
    note: 'mean distance of neurons on the concept map',
    share: false,
  },
  { key: 'dead', title: 'Dead share', note: 'neurons that never activate on the probe set', share: true },
  {
    key: 'switchRate',
    title: 'Switch rate',
    note: 'share of neurons whose label changed since the last checkpoint',
    share: true,
  },
];

export function overviewView(root: HTMLElement, runId: string): View {
  root.innerHTML = `<div class="page-head"><div><h1 id="title"></h1><p class="sub" id="sub"></p></div>
<div class="actions" id="layer-links"></div></div>${THINNED_NOTE}
<div class="stats" id="stats"></div><div class="charts" id="charts"></div>
<section class="card"><h2>Alert episodes</h2><div class="body"><table class="grid" id="episodes"></table></div></section>`;
  const charts = root.querySelector<HTMLElement>('#charts')!;
  const trainingEl = chartBox(
    charts,
    'Loss and accuracy',
    'training',
    260,
    'per checkpoint; shaded: alert episodes',
  );
  const metricEls = LAYER_METRICS.map((m) => chartBox(charts, m.title, m.key, 260, m.note));
  return {
    async refresh() {
      const d = await getJson<OverviewAnswer>(`/api${path('runs', runId)}`);
      const r = d.run;
      showThinned(
        root,
        r.thinned,
        'in that range the layer and neuron views have labels at the kept checkpoints only.',
      );
      root.querySelector('#title')!.textContent = r.runId;
      root.querySelector('#sub')!.innerHTML =
        `${escapeHtml(r.paradigm)} · ${escapeHtml(r.model)} · bundle <code>${escapeHtml(r.bundleId)}</code> · <span class="pill status-${escapeHtml(r.status)}">${escapeHtml(r.status)}</span>`;
      root.querySelector('#layer-links')!.innerHTML = d.layers
        .map(
          (l) =>
            `<span class="layer-link"><a href="${path('runs', runId, 'layers', l.name)}" data-link>${escapeHtml(l.name)}</a><a class="sub-link" href="${path('runs', runId, 'layers', l.name, 'map')}" data-link>map</a></span>`,
        )
        .join('');
      const lastStep = r.lastStep ?? 0;
      const last = (metric: string): number | undefined =>
        d.training.filter((t) => t.metric === metric).at(-1)?.value;
      root.querySelector('#stats')!.innerHTML = [
        ['Last step', String(r.lastStep ?? '–')],
        ['Checkpoints', String(r.checkpoints)],
        ['Loss', fmt(last('loss'), 3)],
        ['Accuracy', pct(last('accuracy'))],
        ['Health', r.health === 'alerting' ? `alerting (${r.firingRules.join(', ')})` : 'ok'],
        ['Alert episodes', String(d.episodes.length)],
      ]
        .map(([k, v]) => `<div class="stat"><span>${k}</span><b>${escapeHtml(v)}</b></div>`)
        .join('');
      const bands = episodeBands(d.episodes, lastStep);
      const metrics = ['loss', 'accuracy'];
      const trainingOption: Option = {
        animation: false,
        color: SERIES_COLOURS,
        tooltip: { trigger: 'axis' },
        legend: { top: 4, right: 8 },
        grid: { ...baseGrid, right: 52 },
        xAxis: stepAxis(),
        yAxis: [
          { type: 'value', name: 'loss', scale: true, ...axisStyle },
          { type: 'value', name: 'accuracy', min: 0, max: 1, ...axisStyle, splitLine: { show: false } },
        ],
        series: metrics.map((m, i) => ({
          id: `training:${m}`,
          name: m,
          type: 'line',
          yAxisIndex: i,
          showSymbol: false,
          data: d.training.filter((t) => t.metric === m).map((t) => [t.step, t.value]),
          ...(i === 0 ? { markArea: bands } : {}),
        })),
      };
      chartIn(trainingEl, 'training').setOption(trainingOption, { notMerge: true });
      const layers = d.layers.map((l) => l.name);
      LAYER_METRICS.forEach((m, k) => {
        const option: Option = {
          animation: false,
          color: SERIES_COLOURS,
          tooltip: {
            trigger: 'axis',
            valueFormatter: (v) =>
              v === null || v === undefined ? 'n/a' : m.share ? pct(Number(v)) : fmt(Number(v)),
          },
          legend: { top: 4, right: 8, type: 'scroll' },
          grid: baseGrid,
          xAxis: stepAxis(),
          yAxis: m.share
            ? {
                type: 'value',
                min: 0,
                max: 1,
                axisLabel: { formatter: (v: number) => `${Math.round(v * 100)}%`, color: '#5b6472' },
                splitLine: axisStyle.splitLine,
              }
            : { type: 'value', scale: true, ...axisStyle },
          series: layers.map((layer, i) => ({
            id: `${m.key}:${layer}`,
            name: layer,
            type: 'line',
            showSymbol: false,
            data: d.curves.filter((c) => c.layer === layer).map((c) => [c.step, c[m.key] as number]),
            ...(i === 0 ? { markArea: bands } : {}),
          })),
        };
        chartIn(metricEls[k], m.key).setOption(option, { notMerge: true });
      });
      root.querySelector('#episodes')!.innerHTML =
        `<thead><tr><th>Rule</th><th>Layer</th><th>Severity</th><th class="num">Fired at step</th><th class="num">Resolved at step</th><th>Message</th></tr></thead><tbody>` +
        (d.episodes
          .map(
            (e) =>
              `<tr><td>${escapeHtml(e.rule)}</td><td><a href="${path('runs', runId, 'layers', e.layer)}" data-link>${escapeHtml(e.layer)}</a></td><td>${escapeHtml(e.severity)}</td><td class="num">${e.firedStep}</td><td class="num">${e.resolvedStep ?? '<span class="pill alerting">open</span>'}</td><td>${escapeHtml(e.message)}</td></tr>`,
          )
          .join('') || '<tr><td colspan="6" class="muted">No alert episodes in this run.</td></tr>') +
        '</tbody>';
    },
  };
}
