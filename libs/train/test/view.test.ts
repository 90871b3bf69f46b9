import { PassThrough } from 'node:stream';
import { formatCheckpoint, TerminalView } from '../src/view';

const result = {
  step: 100,
  layers: [
    {
      layer: 'conv3',
      interpretableFraction: 0.25,
      distinctConceptShare: 0.5,
      labelEntropy: 0.9,
      topConcepts: [
        { concept: 'red', count: 4 },
        { concept: 'circle', count: 2 },
      ],
    },
  ],
  alerts: [{ layer: 'conv3', rule: 'concept_dominance', state: 'firing' as const, message: 'red holds 70%' }],
};

describe('terminal view', () => {
  it('formats a checkpoint: interpretable share, diversity, top concepts, alerts', () => {
    const lines = formatCheckpoint(100, result);
    expect(lines[1]).toMatch(/conv3 +interpretable +25% +diversity +50% +top: red x4, circle x2/);
    expect(lines[2]).toBe('  ALERT firing concept_dominance on conv3: red holds 70%');
  });

  it('is quiet when not on a terminal: one line per checkpoint, no progress bar', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += d.toString()));
    const view = new TerminalView(out as unknown as NodeJS.WriteStream, { tty: false });
    view.onStart({
      runId: 'r',
      paradigm: 'standard',
      totalSteps: 200,
      startStep: 0,
      layers: [{ name: 'conv3', width: 8, kind: 'conv' }],
    });
    for (let s = 1; s <= 100; s++)
      view.onStep({ step: s, totalSteps: 200, loss: 1, accuracy: 0.5, imagesPerSecond: 150, epoch: 0 });
    view.onCheckpoint(100, result);
    view.stop();
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(
      /^checkpoint 100: interpretable\/diversity conv3 25%\/50% \(training at step 100\/200/,
    );
    expect(lines[2]).toMatch(/^ALERT firing/);
  });
});
