import * as echarts from 'echarts';
import type { AlertEpisode } from '../src/api-types';

export type Chart = echarts.ECharts;
export type Option = echarts.EChartsOption;

declare global {
  interface Window {
    /** For tests and the screenshot script: the page's charts by name, and its state. */
    cm: {
      charts: Record<string, Chart>;
      ready: boolean;
      /** How many times the current view has drawn data (1 after load, +1 per live update). */
      draws: number;
      view: string;
      errors: string[];
    };
  }
}

window.cm = { charts: {}, ready: false, draws: 0, view: '', errors: [] };

const resize = (): void => {
  for (const c of Object.values(window.cm.charts)) c.resize();
};
window.addEventListener('resize', resize);

/** A chart in `el`, registered by name (one instance per element). */
export function chartIn(el: HTMLElement, name: string): Chart {
  const existing = echarts.getInstanceByDom(el);
  if (existing) return existing;
  const chart = echarts.init(el, undefined, { renderer: 'canvas' });
  window.cm.charts[name] = chart;
  return chart;
}

export function disposeCharts(): void {
  for (const c of Object.values(window.cm.charts)) c.dispose();
  window.cm.charts = {};
}

/** Fixed colours per concept category (colour, shape, texture...), others from a palette. */
const CATEGORY_COLOURS: Record<string, string> = {
  colour: '#e4572e',
  color: '#e4572e',
  shape: '#17becf',
  texture: '#9467bd',
  size: '#f2a541',
  position: '#2ca02c',
  background: '#8c564b',
  count: '#e377c2',
  scene: '#bcbd22',
  object: '#1f77b4',
  material: '#7f7f7f',
};
const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];
export function categoryColour(category: string): string {
  const known = CATEGORY_COLOURS[category.toLowerCase()];
  if (known) return known;
  let h = 0;
  for (const ch of category) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[h % PALETTE.length];
}

export const SERIES_COLOURS = [
  '#3b6fd8',
  '#e4572e',
  '#2ca02c',
  '#9467bd',
  '#f2a541',
  '#17becf',
  '#8c564b',
  '#e377c2',
];

/** Alert episodes as shaded bands on a step axis (open episodes run to `lastStep`). */
export function episodeBands(
  episodes: AlertEpisode[],
  lastStep: number,
): NonNullable<echarts.LineSeriesOption['markArea']> {
  return {
    silent: false,
    itemStyle: { color: 'rgba(228, 87, 46, 0.12)', borderColor: 'rgba(228, 87, 46, 0.5)', borderWidth: 1 },
    label: { show: true, position: 'insideTop', color: '#b23a1a', fontSize: 10 },
    // overlapping episodes: labels on alternating rows so they stay readable
    data: episodes.map((e, i) => [
      { name: `${e.rule} @ ${e.layer}`, xAxis: e.firedStep, label: { offset: [0, (i % 3) * 12] } },
      { xAxis: e.resolvedStep ?? Math.max(lastStep, e.firedStep) },
    ]),
  };
}

export const baseGrid = { left: 52, right: 16, top: 36, bottom: 40, containLabel: false };
export const axisStyle = {
  axisLine: { lineStyle: { color: '#c9ced6' } },
  axisLabel: { color: '#5b6472' },
  splitLine: { lineStyle: { color: '#eef0f3' } },
};

/** The step axis every over-training chart shares (a fresh object per chart: ECharts keeps what it is given). */
export function stepAxis(): NonNullable<Option['xAxis']> {
  return {
    type: 'value',
    name: 'step',
    nameLocation: 'middle',
    nameGap: 26,
    min: 'dataMin',
    max: 'dataMax',
    ...axisStyle,
  };
}
