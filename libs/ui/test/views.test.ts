import { nearestStep, sampleSteps } from '../src';
import { parseRoute } from '../web/routes';

describe('heat strip sampling', () => {
  it('keeps every step up to the cap, else an even sample with the first and the last', () => {
    expect(sampleSteps([0, 10, 20], 5)).toEqual([0, 10, 20]);
    const steps = Array.from({ length: 1000 }, (_, i) => i * 10);
    const s = sampleSteps(steps, 160);
    expect(s).toHaveLength(160);
    expect([s[0], s.at(-1)]).toEqual([0, 9990]);
    expect([...s].sort((a, b) => a - b)).toEqual(s);
  });
  it('nearest step: the later one on ties, null for none', () => {
    expect(nearestStep([0, 10, 20], 15)).toBe(20);
    expect(nearestStep([0, 10, 20], 14)).toBe(10);
    expect(nearestStep([], 3)).toBeNull();
  });
});

describe('page routes', () => {
  it('decodes each segment, so run ids may hold slashes, quotes and spaces', () => {
    const run = "a/b 'c'; DROP";
    expect(parseRoute(`/runs/${encodeURIComponent(run)}/layers/conv%2F1/neurons/7`)).toEqual({
      view: 'neuron',
      run,
      layer: 'conv/1',
      neuron: '7',
    });
    expect(parseRoute('/')).toEqual({ view: 'runs' });
    expect(parseRoute('/compare/a/b')).toEqual({ view: 'compare', a: 'a', b: 'b' });
    expect(parseRoute('/runs/x/layers/y/map')).toEqual({ view: 'map', run: 'x', layer: 'y' });
    expect(parseRoute('/nope/x')).toEqual({ view: 'unknown', path: '/nope/x' });
  });
});
