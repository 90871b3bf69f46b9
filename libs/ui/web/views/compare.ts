import type { CompareAnswer } from '../../src/api-types';
import { escapeHtml, getJson, path, pct } from '../api';
import { axisStyle, baseGrid, chartIn, stepAxis, type Option } from '../charts';
import { queryParam, replaceQuery } from '../router';
import { LAYER_METRICS } from './overview';
import { chartBox, type View } from './view';

const RUN_COLOURS = ['#3b6fd8', '#e4572e'];

export function compareView(root: HTMLElement, a: string, b: string): View {
  root.innerHTML = `<div class="page-head"><div><h1>Compare runs</h1><p class="sub" id="sub"></p></div>
<div class="actions"><label>layer <select id="layer"></select></label></div></div>
<div class="setup-warning" id="setup-warning" role="alert" hidden></div>
<div class="charts" id="charts"></div>`;
  const charts = root.querySelector<HTMLElement>('#charts')!;
  const select = root.querySelector<HTMLSelectElement>('#layer')!;
  const sharesEl = chartBox(
    charts,
    'Category shares at the last checkpoint',
    'compare-shares',
    280,
    'side by side: share of the layer’s interpretable neurons per category',
  );
  const lossEl = chartBox(charts, 'Loss', 'compare-loss', 280);
  const metricEls = LAYER_METRICS.map((m) => chartBox(charts, m.title, `compare-${m.key}`, 260, m.note));
  let layer = queryParam('layer');
  select.addEventListener('change', () => {
    layer = select.value;
    replaceQuery({ layer });
    void view.refresh();
  });
  const view: View = {
    async refresh() {
      const d = await getJson<CompareAnswer>(
        `/api${path('compare', a, b)}${layer ? `?layer=${encodeURIComponent(layer)}` : ''}`,
      );
      const ids = d.runs.map((r) => r.runId);
      root.querySelector('#sub')!.innerHTML = d.runs
        .map(
          (r, i) =>
            `<span class="run-key" style="--c:${RUN_COLOURS[i]}"></span><a href="${path('runs', r.runId)}" data-link>${escapeHtml(r.runId)}</a> (${escapeHtml(r.paradigm)}, last step ${r.lastStep ?? '–'})`,
        )
        .join(' &nbsp;vs&nbsp; ');
      showSetupWarning(root.querySelector<HTMLElement>('#setup-warning')!, d);
      select.innerHTML = d.layers.map((l) => `<option>${escapeHtml(l)}</option>`).join('');
      select.value = d.layer;
      LAYER_METRICS.forEach((m, k) => {
        const option: Option = {
          animation: false,
          color: RUN_COLOURS,
          tooltip: { trigger: 'axis' },
          legend: { top: 4, right: 8 },
          grid: baseGrid,
          xAxis: stepAxis(),
          yAxis: m.share
            ? { type: 'value', min: 0, max: 1, ...axisStyle }
            : { type: 'value', scale: true, ...axisStyle },
          series: ids.map((id) => ({
            id: `${m.key}:${id}`,
            name: id,
            type: 'line',
            showSymbol: false,
            data: d.curves.filter((c) => c.runId === id).map((c) => [c.step, c[m.key] as number]),
          })),
        };
        chartIn(metricEls[k], `compare-${m.key}`).setOption(option, { notMerge: true });
      });
      chartIn(lossEl, 'compare-loss').setOption(
        {
          animation: false,
          color: RUN_COLOURS,
          tooltip: { trigger: 'axis' },
          legend: { top: 4, right: 8 },
          grid: baseGrid,
          xAxis: stepAxis(),
          yAxis: { type: 'value', scale: true, ...axisStyle },
          series: ids.map((id) => ({
            id: `loss:${id}`,
            name: id,
            type: 'line',
            showSymbol: false,
            data: d.loss.filter((l) => l.runId === id).map((l) => [l.step, l.value]),
          })),
        } satisfies Option,
        { notMerge: true },
      );
      const categories = [...new Set(d.shares.map((s) => s.category))].sort();
      chartIn(sharesEl, 'compare-shares').setOption(
        {
          animation: false,
          color: RUN_COLOURS,
          tooltip: { trigger: 'axis', valueFormatter: (v) => pct(Number(v)) },
          legend: { top: 4, right: 8 },
          grid: baseGrid,
          xAxis: {
            type: 'category',
            data: categories,
            ...axisStyle,
            axisLabel: { color: '#5b6472', formatter: (c: string) => c },
          },
          yAxis: { type: 'value', min: 0, max: 1, ...axisStyle },
          series: ids.map((id, i) => ({
            id: `shares:${id}`,
            name: `${id} @ ${d.shares.find((s) => s.runId === id)?.step ?? '–'}`,
            type: 'bar',
            itemStyle: { color: RUN_COLOURS[i], borderColor: '#fff' },
            data: categories.map((c) => d.shares.find((s) => s.runId === id && s.category === c)?.share ?? 0),
          })),
        } satisfies Option,
        { notMerge: true },
      );
    },
  };
  return view;
}

/**
 * The warning `cm report --compare` also gives: runs scored with different setups (method,
 * parameters, calibration, concept set...) have scores and interpretable shares that do not compare
 * directly. Names each field that differs, with both values where they are readable.
 */
function showSetupWarning(el: HTMLElement, d: CompareAnswer): void {
  const diffs = d.setupDifferences;
  el.hidden = diffs.length === 0;
  el.dataset.fields = diffs.map((x) => x.column).join(',');
  el.innerHTML = diffs.length
    ? `<strong>Different setups:</strong> ${escapeHtml(d.runs[0].runId)} and ${escapeHtml(d.runs[1].runId)} were scored with different ${diffs
        .map((x) => escapeHtml(x.label))
        .join(', ')}; their scores and interpretable shares do not compare directly.
<ul>${diffs
        .map(
          (x) =>
            `<li data-field="${escapeHtml(x.column)}"><b>${escapeHtml(x.label)}</b>: ${escapeHtml(x.a || '–')} <span class="vs">vs</span> ${escapeHtml(x.b || '–')}</li>`,
        )
        .join('')}</ul>`
    : '';
}
