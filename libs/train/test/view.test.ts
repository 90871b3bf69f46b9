import { PassThrough } from 'node:stream';
import type { TrainRunResult } from '../src/loop';
import {
  chanceLevel,
  formatCheckpoint,
  formatLearnedSummary,
  formatRunSummary,
  TerminalView,
} from '../src/view';

const result = {
  step: 100,
  layers: [
    {
      layer: 'conv3',
      learnedFraction: 0.125,
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
  it('formats a checkpoint: learned share first, then association, diversity, top concepts, alerts', () => {
    const lines = formatCheckpoint(100, result);
    expect(lines[1]).toMatch(/conv3 +learned +13% +association +25% +diversity +50% +top: red x4, circle x2/);
    expect(lines[2]).toBe('  ALERT firing concept_dominance on conv3: red holds 70%');
    // no random-init baseline yet: the learned share says so rather than reading 0
    const none = { ...result, layers: [{ ...result.layers[0], learnedFraction: null }] };
    expect(formatCheckpoint(100, none)[1]).toMatch(/conv3 +learned +n\/a +association +25%/);
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
      /^checkpoint 100: learned\/association\/diversity conv3 13%\/25%\/50% \(training at step 100\/200/,
    );
    expect(lines[2]).toMatch(/^ALERT firing/);
  });
});

describe('end-of-run summary', () => {
  const run: TrainRunResult = {
    runId: 'demo-adv',
    paradigm: 'adversarial',
    steps: 300,
    finalLoss: 2.0791,
    finalAccuracy: 0.19,
    testAccuracy: 0.2,
    classes: 8,
    bundleId: '0123456789abcdef',
    imagesPerSecond: 120,
    trainSeconds: 50,
    monitorSeconds: 10,
    totalSeconds: 60,
    monitorOverhead: 1 / 6,
    checkpoints: [],
    status: 'completed',
  };

  it('names the probe bundle, the stored loss, and says when test accuracy is at chance level', () => {
    const line = formatRunSummary(run);
    expect(line).toContain('probe bundle 0123456789abcdef');
    expect(line).toContain('loss 2.079 (mean of the last checkpoint window, as stored)');
    expect(line).toContain('test accuracy 20.0% (at chance level: 8 classes, chance 12.5%');
    expect(formatRunSummary({ ...run, testAccuracy: 0.9 })).not.toContain('chance');
    expect(formatRunSummary({ ...run, testAccuracy: undefined })).not.toContain('chance');
  });

  it('ends with the learned-concept share per layer, first -> last checkpoint, the association beside it', () => {
    const at = (step: number, learned: number | null, association: number) => ({
      step,
      status: 'ok' as const,
      result: {
        ...result,
        step,
        layers: [{ ...result.layers[0], learnedFraction: learned, interpretableFraction: association }],
      },
    });
    const lines = formatLearnedSummary({
      ...run,
      checkpoints: [at(0, 0, 0.9), { step: 1, status: 'dropped' }, at(300, 0.25, 0.75)],
    });
    expect(lines[0]).toBe('  learned concepts (association with P, shuffle null), step 0 -> 300:');
    expect(lines[1]).toMatch(/^ +conv3 +0% -> +25% +\(90% -> 75%\)$/);
    expect(formatLearnedSummary({ ...run, checkpoints: [at(0, null, 0.9)] })[1]).toMatch(
      /conv3 +n\/a -> +n\/a +\(90% -> 90%\)/,
    );
    expect(formatLearnedSummary(run)).toEqual([]);
  });

  it('shows a lottery round and its sparsity', () => {
    expect(
      formatRunSummary({ ...run, paradigm: 'lottery', lottery: { round: 2, sparsity: 0.75 } }),
    ).toContain('lottery round 2 at sparsity 75.0%');
  });

  it('says how many checkpoints were dropped, delivered late from the spool, or failed', () => {
    const checkpoints: TrainRunResult['checkpoints'] = [
      { step: 0, status: 'ok' },
      { step: 1, status: 'spooled' },
      { step: 2, status: 'spooled' },
      { step: 3, status: 'dropped' },
      { step: 4, status: 'failed', error: 'boom' },
    ];
    expect(formatRunSummary({ ...run, checkpoints })).toContain(
      '1 checkpoints monitored, 2 delivered late from the spool, 1 dropped, 1 failed',
    );
    expect(formatRunSummary({ ...run, checkpoints: [{ step: 0, status: 'ok' }] })).not.toMatch(
      /dropped|failed|spool/,
    );
  });

  it('chance level: 1 / classes plus min(10 points, 1 / classes)', () => {
    expect(chanceLevel(8)).toBeCloseTo(0.225);
    expect(chanceLevel(2)).toBeCloseTo(0.6);
    expect(chanceLevel(100)).toBeCloseTo(0.02);
  });
});
