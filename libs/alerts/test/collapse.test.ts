import type { AlertRecord, CollapseRunState, LayerSnapshotRecord } from '@cm/contracts';
import { loadConfig } from '@cm/config';
import {
  CollapseDetector,
  replaySnapshots,
  rulesFromConfig,
  syntheticRun,
  type CollapseRulesConfig,
} from '../src';

const rules: CollapseRulesConfig = rulesFromConfig(loadConfig({}).alerts);

/** A healthy-looking snapshot; tests override the fields a rule reads. */
function snap(step: number, over: Partial<LayerSnapshotRecord> = {}): LayerSnapshotRecord {
  return {
    kind: 'snapshot',
    runId: 'r1',
    layer: 'conv1',
    step,
    neurons: 20,
    interpretableFraction: 0.6,
    meanTopScore: 0.4,
    distinctConceptShare: 0.5,
    labelEntropy: 0.8,
    embeddingSpread: 0.7,
    deadFraction: 0,
    switches: 1,
    switchFraction: 0.05,
    threshold: 0.2,
    categoryShares: { color: 0.5, object: 0.5 },
    topConcepts: [{ concept: 'dog', count: 3 }],
    time: new Date(Date.UTC(2024, 0, 1) + step * 1000).toISOString(),
    ...over,
  };
}

const feed = (d: CollapseDetector, list: LayerSnapshotRecord[]): AlertRecord[] =>
  list.flatMap((s) => d.observe(s));

describe('CollapseDetector', () => {
  it('raises nothing on a healthy stream', () => {
    const d = new CollapseDetector(rules);
    expect(
      feed(
        d,
        Array.from({ length: 30 }, (_, i) =>
          snap(i, { distinctConceptShare: 0.45 + (0.1 * ((i * 7) % 3)) / 2 }),
        ),
      ),
    ).toEqual([]);
  });

  it('fires once after hysteresis and resolves once, sharing the alertId', () => {
    const d = new CollapseDetector({ ...rules, hysteresis: 2 });
    const stream = [
      snap(0),
      snap(1, { topConcepts: [{ concept: 'stripes', count: 15 }] }), // 1st: pending
      snap(2, { topConcepts: [{ concept: 'stripes', count: 16 }] }), // 2nd: fires
      snap(3, { topConcepts: [{ concept: 'stripes', count: 10 }] }), // dips below: no resolution yet
      snap(4, { topConcepts: [{ concept: 'stripes', count: 16 }] }), // back above: nothing new
      snap(5),
      snap(6), // clear twice: resolves
      snap(7),
    ];
    const alerts = feed(d, stream);
    expect(alerts.map((a) => [a.rule, a.state, a.step])).toEqual([
      ['concept_dominance', 'firing', 2],
      ['concept_dominance', 'resolved', 6],
    ]);
    expect(alerts[0].alertId).toBe(alerts[1].alertId);
    expect(alerts[0]).toMatchObject({
      runId: 'r1',
      layer: 'conv1',
      value: 0.8,
      threshold: rules.dominanceShare,
      severity: 'critical',
    });
    expect(alerts[0].message).toContain('stripes');
    expect(alerts[0].message).toContain('step 2');
  });

  it('does not flap on a value oscillating around the threshold', () => {
    const d = new CollapseDetector({ ...rules, hysteresis: 2 });
    const alerts = feed(
      d,
      Array.from({ length: 20 }, (_, i) => snap(i, { distinctConceptShare: i % 2 ? 0.04 : 0.06 })),
    );
    expect(alerts).toEqual([]);
  });

  it('diversity_drop compares with the layer history and keeps the healthy baseline while collapsed', () => {
    const d = new CollapseDetector({ ...rules, window: 4, hysteresis: 1 });
    const healthy = Array.from({ length: 4 }, (_, i) => snap(i, { distinctConceptShare: 0.6 }));
    // A long collapse at 0.2 (below 0.5 x 0.6 but above the floor): one firing, no self-resolution.
    const collapsed = Array.from({ length: 12 }, (_, i) => snap(4 + i, { distinctConceptShare: 0.2 }));
    const recovered = [snap(16, { distinctConceptShare: 0.55 })];
    const alerts = feed(d, [...healthy, ...collapsed, ...recovered]);
    expect(alerts.map((a) => [a.rule, a.state, a.step])).toEqual([
      ['diversity_drop', 'firing', 4],
      ['diversity_drop', 'resolved', 16],
    ]);
    expect(alerts[0].threshold).toBeCloseTo(0.3);
    expect(alerts[0].value).toBeCloseTo(0.2);
  });

  it('needs a full window of history before diversity_drop can fire', () => {
    const d = new CollapseDetector({ ...rules, window: 5, hysteresis: 1 });
    expect(feed(d, [snap(0, { distinctConceptShare: 0.6 }), snap(1, { distinctConceptShare: 0.1 })])).toEqual(
      [],
    );
  });

  it('covers the floor, vanish and dead-neuron rules', () => {
    const d = new CollapseDetector({ ...rules, window: 3, hysteresis: 1 });
    const alerts = feed(d, [
      snap(0),
      snap(1),
      snap(2),
      snap(3, { distinctConceptShare: 0.3, interpretableFraction: 0.1, deadFraction: 0.7 }),
    ]);
    expect(alerts.map((a) => a.rule).sort()).toEqual(['dead_neurons', 'interpretable_vanish']);
    const floor = feed(new CollapseDetector({ ...rules, hysteresis: 1 }), [
      snap(0, { distinctConceptShare: 0.01 }),
    ]);
    expect(floor.map((a) => [a.rule, a.severity])).toEqual([['diversity_floor', 'critical']]);
  });

  it('does not fire interpretable_vanish for a layer that never was interpretable', () => {
    const d = new CollapseDetector({ ...rules, window: 3, hysteresis: 1 });
    expect(
      feed(
        d,
        [0, 1, 2, 3, 4].map((i) => snap(i, { interpretableFraction: i < 3 ? 0.05 : 0 })),
      ),
    ).toEqual([]);
  });

  it('keeps runs and layers apart and ignores redelivered steps', () => {
    const d = new CollapseDetector({ ...rules, hysteresis: 1 });
    const bad = { distinctConceptShare: 0.01 };
    const a = d.observe(snap(5, { ...bad, runId: 'a' }));
    const b = d.observe(snap(5, { ...bad, runId: 'b' }));
    const c = d.observe(snap(5, { ...bad, runId: 'a', layer: 'conv2' }));
    expect([a.length, b.length, c.length]).toEqual([1, 1, 1]);
    expect(d.observe(snap(5, { ...bad, runId: 'a' }))).toEqual([]);
    expect(d.observe(snap(3, { runId: 'a' }))).toEqual([]);
    expect(d.firing('a', 'conv1')).toEqual(['diversity_floor']);
    d.forgetRun('a');
    expect(d.firing('a', 'conv1')).toEqual([]);
    expect(d.firing('b', 'conv1')).toEqual(['diversity_floor']);
  });

  it('exportState/importState: a new detector carries a run on exactly like the uninterrupted one', () => {
    const cfg = { ...rules, window: 3, hysteresis: 2 };
    // healthy, then a long diversity collapse (drop + floor), then recovery: episodes open across the cut
    const stream = Array.from({ length: 14 }, (_, i) =>
      snap(i, {
        distinctConceptShare: i < 4 ? 0.6 : i < 10 ? 0.02 : 0.6,
        topConcepts: [{ concept: 'dog', count: i >= 5 && i < 9 ? 15 : 3 }],
      }),
    );
    const uninterrupted = feed(new CollapseDetector(cfg), stream);
    expect(uninterrupted.filter((a) => a.state === 'firing').length).toBeGreaterThanOrEqual(2);
    for (const cut of [1, 5, 6, 7, 9, 11]) {
      const before = new CollapseDetector(cfg);
      const first = feed(before, stream.slice(0, cut));
      before.observe(snap(cut - 1, { runId: 'other' })); // another run is not exported
      // through JSON, as the state store keeps it
      const saved = JSON.parse(JSON.stringify(before.exportState('r1')));
      expect(Object.keys(saved)).toEqual(['conv1']);
      const after = new CollapseDetector(cfg);
      after.importState('r1', saved);
      expect(after.firing('r1', 'conv1')).toEqual(before.firing('r1', 'conv1'));
      // a resent snapshot at or before the cut is still ignored
      expect(after.observe(stream[cut - 1])).toEqual([]);
      expect([...first, ...feed(after, stream.slice(cut))]).toEqual(uninterrupted);
    }
  });

  it('importState replaces only that run and rejects damaged state naming the problem', () => {
    const d = new CollapseDetector({ ...rules, hysteresis: 1 });
    d.observe(snap(0, { distinctConceptShare: 0.01 }));
    d.observe(snap(0, { distinctConceptShare: 0.01, runId: 'b' }));
    d.importState('r1', {});
    expect(d.firing('r1', 'conv1')).toEqual([]);
    expect(d.firing('b', 'conv1')).toEqual(['diversity_floor']);
    const good = d.exportState('b');
    const bad = (mutate: (s: CollapseRunState) => void): string => {
      const s = JSON.parse(JSON.stringify(good)) as CollapseRunState;
      mutate(s);
      try {
        new CollapseDetector(rules).importState('b', s);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('CORRUPT');
        return (e as Error).message;
      }
      throw new Error('expected CORRUPT');
    };
    expect(bad((s) => (s.conv1.rules.nonsense = { firing: false, streak: 0 }))).toMatch(
      /layer conv1: unknown rule nonsense/,
    );
    expect(bad((s) => delete s.conv1.rules.diversity_floor.alertId)).toMatch(
      /rule diversity_floor: a firing rule needs its alertId/,
    );
    expect(bad((s) => (s.conv1.diversityHistory = ['x'] as unknown as number[]))).toMatch(
      /diversityHistory must be finite numbers/,
    );
    expect(bad((s) => (s.conv1.lastStep = 1.5))).toMatch(/lastStep 1.5/);
  });

  it('rejects bad settings with a clear error', () => {
    expect(() => new CollapseDetector({ ...rules, window: 0 })).toThrow(/window must be a positive integer/);
    expect(() => new CollapseDetector({ ...rules, dominanceShare: 1.5 })).toThrow(
      /dominanceShare must be in \[0, 1\]/,
    );
    expect(() => new CollapseDetector(rules).observe(snap(-1))).toThrow(/non-negative integer/);
  });

  it('reads thresholds from the CM_ALERT_* configuration', () => {
    const r = rulesFromConfig(
      loadConfig({
        CM_ALERT_DEAD_SHARE: '0.3',
        CM_ALERT_HYSTERESIS: '4',
        CM_ALERT_INTERPRETABLE_VANISH_RATIO: '0.25',
      }).alerts,
    );
    expect(r).toMatchObject({ deadShare: 0.3, hysteresis: 4, interpretableVanishRatio: 0.25 });
  });
});

describe('synthetic replay', () => {
  it('an engineered collapse raises exactly one firing and one resolution per rule episode; a healthy run none', () => {
    const collapsed = syntheticRun({
      runId: 'collapse',
      steps: 24,
      collapse: { layer: 'conv2', from: 10, to: 16 },
    });
    const alerts = replaySnapshots(rules, collapsed.snapshots);
    expect(alerts.length).toBeGreaterThan(0);
    expect(new Set(alerts.map((a) => a.layer))).toEqual(new Set(['conv2']));
    const byEpisode = new Map<string, string[]>();
    for (const a of alerts) byEpisode.set(a.alertId, [...(byEpisode.get(a.alertId) ?? []), a.state]);
    for (const states of byEpisode.values()) expect(states).toEqual(['firing', 'resolved']);
    const rulesFired = alerts.filter((a) => a.state === 'firing').map((a) => a.rule);
    expect(new Set(rulesFired).size).toBe(rulesFired.length);
    expect(rulesFired).toEqual(expect.arrayContaining(['diversity_drop', 'concept_dominance']));
    for (const a of alerts.filter((x) => x.state === 'firing')) {
      expect(a.step).toBeGreaterThanOrEqual(1000);
      expect(a.step).toBeLessThan(1600);
    }
    const healthy = syntheticRun({ runId: 'healthy', steps: 24 });
    expect(replaySnapshots(rules, healthy.snapshots)).toEqual([]);
  });
});
