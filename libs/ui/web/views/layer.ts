import type { LayerAnswer, SwitchingAnswer } from '../../src/api-types';
import { escapeHtml, getJson, path } from '../api';
import { axisStyle, baseGrid, categoryColour, chartIn, episodeBands, type Option, stepAxis } from '../charts';
import { navigate } from '../router';
import { card, chartBox, showThinned, THINNED_NOTE, type View } from './view';

export function layerView(root: HTMLElement, runId: string, layer: string): View {
  root.innerHTML = `<div class="page-head"><div><h1 id="title"></h1><p class="sub" id="sub"></p></div>
<div class="actions"><a class="button" href="${path('runs', runId, 'layers', layer, 'map')}" data-link>Concept map</a></div></div>${THINNED_NOTE}
<div id="layer-body"></div>`;
  const body = root.querySelector<HTMLElement>('#layer-body')!;
  const heatEl = chartBox(
    body,
    'Every neuron’s concept over steps',
    'heat',
    420,
    'one row per neuron, coloured by the category of its top concept; blank: no label; click a cell for the neuron',
  );
  const lower = document.createElement('div');
  lower.className = 'charts';
  body.appendChild(lower);
  const sharesEl = chartBox(
    lower,
    'Category shares over steps',
    'shares',
    300,
    'share of the layer’s interpretable neurons per concept category',
  );
  const switching = card(lower, 'Neurons that switch most', {
    note: 'label changes over the run, with the concepts they passed through',
  });
  let heatData: LayerAnswer | undefined;
  const heat = chartIn(heatEl, 'heat');
  heat.on('click', (p) => {
    const v = p.value as number[] | undefined;
    if (!heatData || !Array.isArray(v)) return;
    const neuron = heatData.heat[v[1]]?.neuron;
    if (neuron !== undefined)
      navigate(`${path('runs', runId, 'layers', layer, 'neurons', neuron)}?step=${heatData.heatSteps[v[0]]}`);
  });
  return {
    async refresh() {
      // the switching table scans the whole layer: asked in parallel, drawn when it comes
      const switchingAnswer = getJson<SwitchingAnswer>(
        `/api${path('runs', runId, 'layers', layer, 'switching')}`,
      ).then(
        (answer) => ({ answer }),
        (error: unknown) => ({ error }),
      );
      const d = await getJson<LayerAnswer>(`/api${path('runs', runId, 'layers', layer)}`);
      heatData = d;
      showThinned(
        root,
        d.run.thinned,
        'in that range the heat strip is blank at the checkpoints whose labels were removed.',
      );
      root.querySelector('#title')!.textContent = `${d.layer.name}`;
      root.querySelector('#sub')!.innerHTML =
        `layer of <a href="${path('runs', runId)}" data-link>${escapeHtml(runId)}</a> · ${d.layer.width || d.heat.length} neurons · ${d.steps.length} checkpoints${
          d.heatSteps.length < d.steps.length ? ` (heat strip: ${d.heatSteps.length} evenly spaced)` : ''
        }`;
      const cells: [number, number, number][] = [];
      d.heat.forEach((row, y) => row.categories.forEach((k, x) => k >= 0 && cells.push([x, y, k])));
      heatEl.style.height = `${Math.min(760, Math.max(280, d.heat.length * 7 + 100))}px`;
      heat.resize();
      const heatOption: Option = {
        animation: false,
        tooltip: {
          formatter: (p) => {
            const v = (p as { value: number[] }).value;
            const row = d.heat[v[1]];
            return `neuron ${row.neuron} · step ${d.heatSteps[v[0]]}<br><b>${escapeHtml(d.conceptNames[row.concepts[v[0]]] ?? '')}</b> (${escapeHtml(d.categories[v[2]])})`;
          },
        },
        grid: { left: 56, right: 16, top: 40, bottom: 40 },
        xAxis: {
          type: 'category',
          data: d.heatSteps.map(String),
          name: 'step',
          nameLocation: 'middle',
          nameGap: 26,
          ...axisStyle,
          splitLine: { show: false },
        },
        yAxis: {
          type: 'category',
          data: d.heat.map((r) => `n${r.neuron}`),
          inverse: true,
          ...axisStyle,
          axisLabel: {
            color: '#5b6472',
            fontSize: 10,
            interval: Math.max(0, Math.ceil(d.heat.length / 40) - 1),
          },
          splitLine: { show: false },
        },
        visualMap: {
          type: 'piecewise',
          dimension: 2,
          orient: 'horizontal',
          top: 0,
          left: 'center',
          pieces: d.categories.map((c, k) => ({ value: k, label: c, color: categoryColour(c) })),
        },
        series: [{ id: 'heat', type: 'heatmap', data: cells, progressive: 0 }],
      };
      heat.setOption(heatOption, { notMerge: true });
      const categories = [...new Set(d.shares.map((s) => s.category))].sort();
      // A category absent at a step has share 0 there: filled so the stack has no holes.
      const shareSteps = [...new Set(d.shares.map((s) => s.step))].sort((a, b) => a - b);
      const shareOf = new Map(d.shares.map((s) => [`${s.category}|${s.step}`, s.share]));
      sharesEl.dataset.rows = String(d.shares.length);
      const lastStep = d.steps.at(-1) ?? 0;
      const sharesOption: Option = {
        animation: false,
        tooltip: { trigger: 'axis' },
        legend: { top: 4, right: 8, type: 'scroll' },
        grid: baseGrid,
        xAxis: stepAxis(),
        yAxis: { type: 'value', min: 0, max: 1, ...axisStyle },
        series: categories.map((c, i) => ({
          id: `share:${c}`,
          name: c,
          type: 'line',
          stack: 'shares',
          areaStyle: { opacity: 0.85 },
          showSymbol: false,
          lineStyle: { width: 0.5 },
          color: categoryColour(c),
          data: shareSteps.map((s) => [s, shareOf.get(`${c}|${s}`) ?? 0]),
          ...(i === 0 ? { markArea: episodeBands(d.episodes, lastStep) } : {}),
        })),
      };
      chartIn(sharesEl, 'shares').setOption(sharesOption, { notMerge: true });
      heatEl.dataset.cells = String(cells.length);
      const got = await switchingAnswer;
      if ('error' in got) throw got.error;
      const sw = got.answer;
      switching.innerHTML = `<table class="grid" id="switching"><thead><tr><th>Neuron</th><th class="num">Switches</th><th>Concepts it held</th></tr></thead><tbody>${
        sw.switching
          .map(
            (s) =>
              `<tr><td><a href="${path('runs', runId, 'layers', layer, 'neurons', s.neuron)}" data-link>n${s.neuron}</a></td><td class="num">${s.switches}</td><td class="concepts">${escapeHtml(s.concepts)}</td></tr>`,
          )
          .join('') || '<tr><td colspan="3" class="muted">No labels yet.</td></tr>'
      }</tbody></table>${
        sw.from === 'sequences'
          ? '<p class="muted" id="switching-from">Rebuilt from the label sequences: this layer was recorded before the store kept switches (migration 6).</p>'
          : ''
      }`;
    },
  };
}
