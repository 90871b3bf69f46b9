import type { EChartsOption, SeriesOption } from 'echarts';
import type { CurvePoint, LayerAtLast, ReportData } from './data';

/**
 * The report's figures as Apache ECharts options (pure: data in, chart specs out), the paper's
 * pictures of one run or two:
 *  - interpretable share of each layer over training;
 *  - concept diversity of each layer over training (distinct top-1 share, normalised entropy);
 *  - category shares of each layer's interpretable neurons at the last checkpoint;
 *  - per layer, the concept map: the bundle's concepts on its fixed 2D map, the neurons at the last
 *    checkpoint coloured by category, and the trajectories of the neurons that moved most.
 * A compared run is overlaid in the same figure: dashed lines, hollow triangles, its own bars.
 */
export interface Figure {
  /** File name under the output folder (PNG). */
  file: string;
  title: string;
  caption: string;
  width: number;
  height: number;
  option: EChartsOption;
}

/** Categories in a fixed order and colour, so every figure (and the web view) agrees. */
export const CATEGORY_COLOURS: Record<string, string> = {
  colour: '#d62728',
  color: '#d62728',
  texture: '#8c564b',
  shape: '#1f77b4',
  object: '#2ca02c',
  scene: '#9467bd',
  part: '#ff7f0e',
  material: '#7f7f7f',
};
const FALLBACK_COLOURS = ['#17becf', '#bcbd22', '#e377c2', '#393b79', '#637939', '#8c6d31'];
const LAYER_COLOURS = [
  '#5470c6',
  '#91cc75',
  '#fac858',
  '#ee6666',
  '#73c0de',
  '#3ba272',
  '#fc8452',
  '#9a60b4',
];

export function categoryColour(category: string, known: readonly string[]): string {
  const fixed = CATEGORY_COLOURS[category.toLowerCase()];
  if (fixed) return fixed;
  const i = known.filter((c) => !CATEGORY_COLOURS[c.toLowerCase()]).indexOf(category);
  return FALLBACK_COLOURS[(i < 0 ? 0 : i) % FALLBACK_COLOURS.length];
}

const RUN_LINE = ['solid', 'dashed'] as const;
const RUN_SYMBOL = ['circle', 'triangle'] as const;

/** Legends go to the right, one entry a line: long layer and run names never cover the plot. */
const LEGEND_WIDTH = 230;
const base = (title: string, subtitle: string): EChartsOption => ({
  title: { text: title, subtext: subtitle, left: 'center', textStyle: { fontSize: 18 } },
  legend: {
    orient: 'vertical',
    right: 10,
    top: 90,
    type: 'plain',
    itemGap: 8,
    textStyle: { width: LEGEND_WIDTH - 40, overflow: 'truncate' },
  },
  tooltip: {},
});

/**
 * A short name for a run inside legends: its paradigm when the two runs differ in paradigm
 * (standard vs adversarial), else A / B; the subtitle spells out which run is which.
 */
export function runTag(data: ReportData, index: number): string {
  if (data.runs.length < 2) return '';
  const [a, b] = data.runs;
  return a.info.paradigm !== b.info.paradigm ? data.runs[index].info.paradigm : ['A', 'B'][index];
}

function subtitle(data: ReportData, style: 'lines' | 'markers' = 'lines'): string {
  const how = style === 'lines' ? ['solid', 'dashed'] : ['filled circles', 'hollow triangles'];
  return data.runs
    .map(
      (r, i) =>
        `${data.runs.length > 1 ? `${runTag(data, i)} (${how[i]}): ` : ''}${r.info.runId} · ${r.info.model} · ${r.info.paradigm}`,
    )
    .join('    ');
}

function allLayers(data: ReportData): string[] {
  const out: string[] = [];
  for (const r of data.runs) for (const l of r.layers) if (!out.includes(l)) out.push(l);
  return out;
}

function curveSeries(
  data: ReportData,
  value: (c: CurvePoint) => number,
  axis: { x: number; y: number } = { x: 0, y: 0 },
): SeriesOption[] {
  const layers = allLayers(data);
  const series: SeriesOption[] = [];
  data.runs.forEach((r, ri) => {
    for (const layer of r.layers) {
      const points = r.curves.filter((c) => c.layer === layer).sort((a, b) => a.step - b.step);
      series.push({
        type: 'line',
        name: data.runs.length > 1 ? `${layer} · ${runTag(data, ri)}` : layer,
        xAxisIndex: axis.x,
        yAxisIndex: axis.y,
        data: points.map((p) => [p.step, value(p)]),
        showSymbol: points.length <= 40,
        symbol: RUN_SYMBOL[ri],
        symbolSize: 6,
        lineStyle: { width: 2, type: RUN_LINE[ri] },
        itemStyle: { color: LAYER_COLOURS[layers.indexOf(layer) % LAYER_COLOURS.length] },
      });
    }
  });
  return series;
}

const shareAxis = (name: string, gridIndex = 0) => ({
  type: 'value' as const,
  name,
  min: 0,
  max: 1,
  gridIndex,
  nameTextStyle: { align: 'left' as const },
  axisLabel: { formatter: (v: number) => `${Math.round(v * 100)}%` },
});
const stepAxis = (gridIndex = 0) => ({
  type: 'value' as const,
  name: 'step',
  gridIndex,
  nameLocation: 'middle' as const,
  nameGap: 28,
  min: 'dataMin' as const,
  max: 'dataMax' as const,
});

export function interpretableFigure(data: ReportData): Figure {
  return {
    file: 'interpretable-share.png',
    title: 'Interpretable neurons over training',
    caption:
      'Share of each layer’s neurons whose top concept clears the calibrated threshold, per checkpoint.',
    width: 1200,
    height: 640,
    option: {
      ...base('Interpretable share per layer', subtitle(data)),
      grid: { left: 70, right: LEGEND_WIDTH + 20, top: 90, bottom: 60 },
      xAxis: stepAxis(),
      yAxis: shareAxis('interpretable share'),
      series: curveSeries(data, (c) => c.interpretable),
    },
  };
}

export function diversityFigure(data: ReportData): Figure {
  const left = curveSeries(data, (c) => c.distinctShare, { x: 0, y: 0 });
  const right = curveSeries(data, (c) => c.entropy, { x: 1, y: 1 });
  return {
    file: 'diversity.png',
    title: 'Concept diversity over training',
    caption:
      'Left: share of distinct top-1 concepts among a layer’s neurons. Right: entropy of the top-1 concept distribution, normalised to [0, 1].',
    width: 1400,
    height: 640,
    option: {
      ...base('Concept diversity per layer', subtitle(data)),
      grid: [
        { left: 70, width: 480, top: 100, bottom: 60 },
        { left: 640, width: 480, top: 100, bottom: 60 },
      ],
      xAxis: [stepAxis(0), stepAxis(1)],
      yAxis: [shareAxis('distinct concept share', 0), shareAxis('label entropy (normalised)', 1)],
      series: [...left, ...right],
    },
  };
}

export function categoriesFigure(data: ReportData): Figure {
  const rows: { label: string; at: LayerAtLast }[] = [];
  for (const layer of allLayers(data))
    data.runs.forEach((r) => {
      const at = r.last.find((l) => l.layer === layer);
      if (at)
        rows.push({
          label: data.runs.length > 1 ? `${layer} · ${runTag(data, data.runs.indexOf(r))}` : layer,
          at,
        });
    });
  const categories = [...new Set(rows.flatMap((r) => Object.keys(r.at.categoryShares)))].sort();
  return {
    file: 'category-shares.png',
    title: 'Concept categories at the last checkpoint',
    caption:
      'Share of each layer’s interpretable neurons whose concept is a colour, texture, shape, object, ... at the run’s last checkpoint (step in brackets).',
    width: 1200,
    height: Math.max(420, 190 + 46 * rows.length),
    option: {
      ...base(
        'Category shares per layer at the last checkpoint',
        data.runs
          .map(
            (r, i) =>
              `${data.runs.length > 1 ? `${runTag(data, i)}: ` : ''}${r.info.runId} · ${r.info.model} · ${r.info.paradigm}`,
          )
          .join('    '),
      ),
      grid: { left: 260, right: LEGEND_WIDTH + 20, top: 100, bottom: 60 },
      xAxis: { ...shareAxis('share of interpretable neurons'), nameLocation: 'middle', nameGap: 28 },
      yAxis: {
        type: 'category',
        inverse: true,
        data: rows.map((r) => `${r.label} [${r.at.step}]`),
        axisLabel: { width: 240, overflow: 'truncate' },
      },
      series: categories.map((category): SeriesOption => ({
        type: 'bar',
        name: category,
        stack: 'shares',
        barWidth: '60%',
        itemStyle: { color: categoryColour(category, categories) },
        data: rows.map((r) => r.at.categoryShares[category] ?? 0),
      })),
    },
  };
}

/** A layer's name as part of a file name. */
export function fileSafe(layer: string): string {
  return layer.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'layer';
}

export function conceptMapFigure(data: ReportData, layer: string): Figure {
  const atLayer = data.runs.map((r) => r.last.find((l) => l.layer === layer));
  const categories = [
    ...new Set([
      ...data.concepts.map((c) => c.category),
      ...atLayer.flatMap((a) => a?.neurons.map((n) => n.category) ?? []),
    ]),
  ].sort();
  // name the concepts some neuron holds (the others are grey dots): a 1,000-word set stays legible
  const held = new Set(atLayer.flatMap((a) => a?.neurons.map((n) => n.concept) ?? []));
  const series: SeriesOption[] = [
    {
      type: 'scatter',
      name: 'concepts',
      symbolSize: 5,
      itemStyle: { color: '#c8c8c8' },
      data: data.concepts.map((c) => ({
        value: [c.x, c.y],
        name: c.concept,
        label: {
          show: held.has(c.concept),
          formatter: c.concept,
          position: 'right',
          fontSize: 11,
          color: '#555',
        },
      })),
      // names that would overlap another are left out (the dot stays)
      labelLayout: { hideOverlap: true },
      z: 1,
    },
  ];
  atLayer.forEach((at, ri) => {
    if (!at) return;
    for (const category of categories) {
      const points = at.neurons.filter((n) => n.category === category);
      if (points.length === 0) continue;
      series.push({
        type: 'scatter',
        name: data.runs.length > 1 ? `${category} · ${runTag(data, ri)}` : category,
        symbol: RUN_SYMBOL[ri],
        symbolSize: 10,
        itemStyle:
          ri === 0
            ? { color: categoryColour(category, categories), opacity: 0.85 }
            : { color: 'transparent', borderColor: categoryColour(category, categories), borderWidth: 2 },
        data: points.map((n) => ({ value: [n.x, n.y], name: `${n.neuron}: ${n.concept}` })),
        z: 3,
      });
    }
    for (const t of at.trajectories)
      series.push({
        type: 'line',
        name: data.runs.length > 1 ? `paths · ${runTag(data, ri)}` : 'paths',
        data: t.points,
        showSymbol: false,
        lineStyle: { width: 1.5, type: RUN_LINE[ri], color: ri === 0 ? '#333' : '#a33', opacity: 0.7 },
        itemStyle: { color: ri === 0 ? '#333' : '#a33' },
        endLabel: { show: true, formatter: t.neuron, fontSize: 10, color: ri === 0 ? '#333' : '#a33' },
        z: 2,
      });
  });
  const steps = atLayer
    .map((a, i) =>
      a
        ? `${data.runs.length > 1 ? `${runTag(data, i)}: ` : ''}${data.runs[i].info.runId} @ step ${a.step}`
        : null,
    )
    .filter(Boolean);
  return {
    file: `concept-map-${fileSafe(layer)}.png`,
    title: `Concept map: ${layer}`,
    caption: `The probe bundle’s concepts (grey; named where a neuron holds one) on the bundle’s fixed 2D map, ${layer}’s neurons at the last checkpoint coloured by category, and the paths of the ${atLayer[0]?.trajectories.length ?? 0} neurons that moved most over training${data.runs.length > 1 ? '; the compared run in hollow triangles and dashed paths' : ''}.`,
    width: 1250,
    height: 1000,
    option: {
      ...base(`Concept map · ${layer}`, steps.join('    ')),
      legend: {
        ...(base('', '').legend as object),
        data: series.map((s) => String(s.name)).filter((n, i, a) => a.indexOf(n) === i),
      },
      grid: { left: 60, right: LEGEND_WIDTH + 30, top: 90, bottom: 50 },
      xAxis: {
        type: 'value',
        scale: true,
        name: 'map x',
        splitLine: { show: false },
        axisLine: { onZero: false },
      },
      yAxis: {
        type: 'value',
        scale: true,
        name: 'map y',
        splitLine: { show: false },
        axisLine: { onZero: false },
      },
      series,
    },
  };
}

export function reportFigures(data: ReportData): Figure[] {
  const figures = [interpretableFigure(data), diversityFigure(data), categoriesFigure(data)];
  const used = new Set<string>();
  for (const layer of allLayers(data)) {
    const f = conceptMapFigure(data, layer);
    // two layer names that differ only in unsafe characters still get two files
    let file = f.file;
    for (let i = 2; used.has(file); i++) file = f.file.replace(/\.png$/, `-${i}.png`);
    used.add(file);
    figures.push({ ...f, file });
  }
  return figures;
}
