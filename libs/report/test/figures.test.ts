import type { SeriesOption } from 'echarts';
import {
  conceptMapFigure,
  fileSafe,
  reportFigures,
  renderFigure,
  type ReportData,
  type RunData,
} from '../src';

function run(runId: string, layers: string[], neurons: number): RunData {
  return {
    info: {
      runId,
      model: 'tiny',
      paradigm: 'standard',
      bundleId: '0123456789abcdef',
      status: 'completed',
      startedAt: '2026-01-01 00:00:00',
      checkpoints: 3,
      lastStep: 20,
      health: 'ok',
      firingRules: [],
    },
    layers,
    curves: layers.flatMap((layer) =>
      [0, 10, 20].map((step) => ({
        step,
        layer,
        neurons,
        interpretable: step / 40,
        distinctShare: 0.5,
        entropy: 0.7,
        spread: 0.3,
        dead: 0,
      })),
    ),
    last: layers.map((layer) => ({
      layer,
      step: 20,
      categoryShares: { colour: 0.25, shape: 0.75 },
      neurons: Array.from({ length: neurons }, (_, k) => ({
        neuron: `n${k}`,
        x: k / neurons,
        y: -k / neurons,
        concept: k % 2 ? 'red' : 'square',
        category: k % 2 ? 'colour' : 'shape',
      })),
      trajectories: [
        {
          neuron: 'n1',
          points: [
            [0, 0],
            [0.1, 0.2],
            [0.3, 0.1],
          ],
        },
      ],
    })),
  };
}

const data = (runs: RunData[]): ReportData => ({
  runs,
  concepts: [
    { concept: 'red', category: 'colour', x: 0.1, y: 0.1 },
    { concept: 'square', category: 'shape', x: -0.1, y: 0.2 },
    { concept: 'unused', category: 'shape', x: 0.5, y: 0.5 },
  ],
  notes: [],
  generatedAt: '2026-01-01T00:00:00.000Z',
});

const points = (s: SeriesOption): number => (Array.isArray(s.data) ? s.data.length : 0);

it('one line per layer and run; the concept map draws every neuron of the layer and names the held concepts', () => {
  const two = data([run('a', ['conv1', 'fc'], 6), run('b', ['conv1', 'fc'], 6)]);
  const figures = reportFigures(two);
  expect(figures.map((f) => f.file)).toEqual([
    'interpretable-share.png',
    'diversity.png',
    'category-shares.png',
    'concept-map-conv1.png',
    'concept-map-fc.png',
  ]);
  expect((figures[0].option.series as SeriesOption[]).map((s) => s.name)).toEqual([
    'conv1 · A',
    'fc · A',
    'conv1 · B',
    'fc · B',
  ]);
  const map = conceptMapFigure(two, 'conv1').option.series as SeriesOption[];
  const neurons = map.filter((s) => s.type === 'scatter' && s.name !== 'concepts');
  expect(neurons.reduce((n, s) => n + points(s), 0)).toBe(2 * 6);
  expect(map.filter((s) => s.type === 'line')).toHaveLength(2);
  const concepts = map.find((s) => s.name === 'concepts')!;
  const labelled = (concepts.data as { name: string; label: { show: boolean } }[]).filter(
    (d) => d.label.show,
  );
  expect(labelled.map((d) => d.name).sort()).toEqual(['red', 'square']);
});

it('names runs in legends by paradigm when they differ, else A and B', () => {
  const b = run('b', ['conv1'], 2);
  b.info.paradigm = 'adversarial';
  const names = (reportFigures(data([run('a', ['conv1'], 2), b]))[0].option.series as SeriesOption[]).map(
    (s) => s.name,
  );
  expect(names).toEqual(['conv1 · standard', 'conv1 · adversarial']);
});

it('layer names become distinct file names', () => {
  expect(fileSafe("block.1/conv'2")).toBe('block.1_conv_2');
  const files = reportFigures(data([run('a', ['a/b', 'a:b'], 2)])).map((f) => f.file);
  expect(files.slice(3)).toEqual(['concept-map-a_b.png', 'concept-map-a_b-2.png']);
});

it('renders a figure to SVG with its text and to a PNG of the stated size', async () => {
  const figure = reportFigures(data([run('a', ['conv1'], 4)]))[0];
  const { svg, png } = await renderFigure(figure);
  expect(svg).toContain('Interpretable share per layer');
  expect(png.readUInt32BE(16)).toBe(figure.width); // IHDR width
  expect(png.readUInt32BE(20)).toBe(figure.height);
});
