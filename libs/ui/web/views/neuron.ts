import type { NeuronAnswer, NeuronStep } from '../../src/api-types';
import { escapeHtml, getJson, path } from '../api';
import {
  axisStyle,
  baseGrid,
  categoryColour,
  chartIn,
  SERIES_COLOURS,
  type Option,
  stepAxis,
} from '../charts';
import { queryParam, replaceQuery } from '../router';
import { card, chartBox, showThinned, THINNED_NOTE, type View } from './view';

export function neuronView(root: HTMLElement, runId: string, layer: string, neuron: string): View {
  root.innerHTML = `<div class="page-head"><div><h1 id="title"></h1><p class="sub" id="sub"></p></div>
<div class="actions"><label class="slider">step <b id="step-label"></b><input type="range" id="step" min="0" max="0" value="0"></label></div></div>
${THINNED_NOTE}<div class="neuron-top" id="top"></div><div class="charts" id="charts"></div>`;
  const top = root.querySelector<HTMLElement>('#top')!;
  const now = card(top, 'At this step', { cls: 'now' });
  const images = card(top, 'Top-activating probe images', {
    cls: 'images',
    note: 'best first, from the run’s probe bundle',
  });
  const charts = root.querySelector<HTMLElement>('#charts')!;
  const scoreEl = chartBox(
    charts,
    'Top-1 concept score over steps',
    'score',
    260,
    'dot colour: category of the concept it held',
  );
  const top5El = chartBox(
    charts,
    'Top-5 concepts with scores over steps',
    'top5',
    260,
    'a line per concept while it is among the neuron’s top 5',
  );
  const slider = root.querySelector<HTMLInputElement>('#step')!;
  let data: NeuronAnswer | undefined;
  let wanted = queryParam('step') !== undefined ? Number(queryParam('step')) : undefined;

  const showStep = (h: NeuronStep, d: NeuronAnswer): void => {
    root.querySelector('#step-label')!.textContent = String(h.step);
    now.innerHTML = `<p class="concept" style="--c:${categoryColour(h.category)}"><b>${escapeHtml(h.concept)}</b> <span class="tag">${escapeHtml(h.category)}</span>${
      h.dead
        ? ' <span class="pill alerting">dead</span>'
        : h.interpretable
          ? ' <span class="pill ok">interpretable</span>'
          : ' <span class="pill">below threshold</span>'
    }</p><table class="grid"><thead><tr><th>#</th><th>Concept</th><th class="num">Score</th></tr></thead><tbody>${h.topConcepts
      .slice(0, 5)
      .map(
        (c, i) =>
          `<tr><td>${i + 1}</td><td>${escapeHtml(c)}</td><td class="num">${(h.topScores[i] ?? 0).toFixed(3)}</td></tr>`,
      )
      .join('')}</tbody></table>`;
    if (h.topImages.length === 0) {
      images.innerHTML = `<p class="empty" id="no-evidence">no evidence stored for this run${
        d.evidenceColumn ? '' : ' (this store has no top_images column yet)'
      }</p>`;
    } else if (!d.bundleAvailable) {
      images.innerHTML = `<p class="empty">probe bundle <code>${escapeHtml(d.run.bundleId)}</code> is not in the bundle folder: images ${h.topImages.join(', ')}</p>`;
    } else {
      images.innerHTML = `<div class="thumbs" id="thumbs">${h.topImages
        .map(
          (i, k) =>
            `<figure><img src="/api/bundles/${encodeURIComponent(d.run.bundleId)}/images/${i}?size=96" alt="probe image ${i}" width="96" height="96"><figcaption>#${k + 1} · img ${i}</figcaption></figure>`,
        )
        .join('')}</div>`;
    }
  };

  slider.addEventListener('input', () => {
    if (!data) return;
    const h = data.history[Number(slider.value)];
    if (!h) return;
    wanted = h.step;
    replaceQuery({ step: String(h.step) });
    showStep(h, data);
  });

  return {
    async refresh() {
      const d = await getJson<NeuronAnswer>(`/api${path('runs', runId, 'layers', layer, 'neurons', neuron)}`);
      data = d;
      showThinned(
        root,
        d.run.thinned,
        'in that range the history below has labels at the kept checkpoints only.',
      );
      root.querySelector('#title')!.textContent = `Neuron ${d.neuron} · ${d.layer.name}`;
      root.querySelector('#sub')!.innerHTML =
        `<a href="${path('runs', runId)}" data-link>${escapeHtml(runId)}</a> · <a href="${path(
          'runs',
          runId,
          'layers',
          layer,
        )}" data-link>${escapeHtml(layer)}</a> · ${d.history.length} checkpoints`;
      slider.max = String(d.history.length - 1);
      let index = wanted === undefined ? d.history.length - 1 : d.history.findIndex((h) => h.step === wanted);
      if (index < 0) index = d.history.length - 1;
      slider.value = String(index);
      showStep(d.history[index], d);
      const scoreOption: Option = {
        animation: false,
        tooltip: {
          trigger: 'axis',
          formatter: (ps) => {
            const p = (ps as { dataIndex: number }[])[0];
            const h = d.history[p.dataIndex];
            return `step ${h.step}<br><b>${escapeHtml(h.concept)}</b> (${escapeHtml(h.category)}) ${h.score.toFixed(3)}`;
          },
        },
        grid: baseGrid,
        xAxis: stepAxis(),
        yAxis: { type: 'value', scale: true, ...axisStyle },
        series: [
          {
            id: 'score',
            type: 'line',
            symbol: 'circle',
            symbolSize: 8,
            lineStyle: { color: '#9aa3b1' },
            data: d.history.map((h) => ({
              value: [h.step, h.score],
              itemStyle: { color: categoryColour(h.category) },
            })),
          },
        ],
      };
      chartIn(scoreEl, 'score').setOption(scoreOption, { notMerge: true });
      const concepts = [...new Set(d.history.flatMap((h) => h.topConcepts.slice(0, 5)))];
      const top5Option: Option = {
        animation: false,
        color: SERIES_COLOURS,
        tooltip: { trigger: 'axis' },
        legend: { top: 4, right: 8, type: 'scroll' },
        grid: baseGrid,
        xAxis: stepAxis(),
        yAxis: { type: 'value', scale: true, ...axisStyle },
        series: concepts.map((c) => ({
          id: `top5:${c}`,
          name: c,
          type: 'line',
          symbolSize: 4,
          connectNulls: false,
          data: d.history.map((h) => {
            const i = h.topConcepts.slice(0, 5).indexOf(c);
            return [h.step, i >= 0 ? h.topScores[i] : null];
          }),
        })),
      };
      chartIn(top5El, 'top5').setOption(top5Option, { notMerge: true });
    },
  };
}
