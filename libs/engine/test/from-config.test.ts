/**
 * One engine builder: the configuration (CM_DISSECT_METHOD, CM_ALERT_*) changes an all-in-one run
 * (localMonitorFromConfig, what `cm train`/`cm demo` use) exactly as it changes a service run
 * (engineFromConfig, what the concept service and `cm serve` use).
 */
import { loadConfig, type CmConfig } from '@cm/config';
import type { CmRecord } from '@cm/contracts';
import { engineFromConfig, inlineDissector, localMonitorFromConfig, MemorySink } from '../src';
import { makeTestBundles, testCheckpoint, testRunSpec, type TestBundles } from '../src/testing';

let tb: TestBundles;
beforeAll(async () => {
  tb = await makeTestBundles();
});
afterAll(() => tb.cleanup());

const STEPS = 4;

/** What a run's records say, without their times: labels with similarity, alerts by rule and state. */
function content(records: CmRecord[]): { labels: string[]; alerts: string[] } {
  const labels: string[] = [];
  const alerts: string[] = [];
  for (const r of records) {
    if (r.kind === 'labels')
      for (const l of r.labels)
        labels.push(`${r.layer}|${r.step}|${l.neuron}|${l.concept}|${l.score.toFixed(5)}`);
    if (r.kind === 'alert') alerts.push(`${r.layer}|${r.step}|${r.rule}|${r.state}|${r.threshold}`);
  }
  return { labels: labels.sort(), alerts: alerts.sort() };
}

async function allInOneRun(cfg: CmConfig): Promise<CmRecord[]> {
  const sink = new MemorySink();
  const monitor = localMonitorFromConfig(cfg, {
    bundles: tb.bundles,
    dissector: inlineDissector(),
    store: { insertRecords: async () => undefined },
    sink,
  });
  await monitor.startRun(testRunSpec('r', tb.bundleId));
  for (let step = 0; step < STEPS; step++) await monitor.sendCheckpoint(testCheckpoint(tb.space, step));
  await monitor.endRun('completed');
  await monitor.close();
  return sink.records;
}

async function serviceRun(cfg: CmConfig): Promise<CmRecord[]> {
  const built = engineFromConfig(cfg, { bundles: tb.bundles, dissector: inlineDissector() });
  const sink = new MemorySink();
  const started = await built.engine.startRun(testRunSpec('r', tb.bundleId));
  await sink.write(started.records);
  for (let step = 0; step < STEPS; step++)
    await sink.write((await built.engine.processCheckpoint('r', testCheckpoint(tb.space, step))).records);
  await sink.write([await built.engine.endRun('r', 'completed')]);
  await built.close();
  return sink.records;
}

describe('engineFromConfig / localMonitorFromConfig', () => {
  const defaults = loadConfig({});
  const cos = loadConfig({ CM_DISSECT_METHOD: 'cos' });
  // One concept over 1 % of a layer is "dominance"; one checkpoint of it fires.
  const strict = loadConfig({ CM_ALERT_DOMINANCE_SHARE: '0.01', CM_ALERT_HYSTERESIS: '1' });

  it('CM_DISSECT_METHOD=cos changes both runs, and both the same way', async () => {
    const [aDefault, sDefault, aCos, sCos] = await Promise.all([
      allInOneRun(defaults),
      serviceRun(defaults),
      allInOneRun(cos),
      serviceRun(cos),
    ]);
    expect(content(aDefault).labels.length).toBe(STEPS * 26);
    expect(content(aDefault)).toEqual(content(sDefault));
    expect(content(aCos)).toEqual(content(sCos));
    expect(content(aCos).labels).not.toEqual(content(aDefault).labels);
  });

  it('a changed CM_ALERT_* threshold changes both runs, and both the same way', async () => {
    const [aDefault, aStrict, sStrict] = await Promise.all([
      allInOneRun(defaults),
      allInOneRun(strict),
      serviceRun(strict),
    ]);
    const dominance = (r: CmRecord[]) => content(r).alerts.filter((a) => a.includes('|concept_dominance|'));
    expect(dominance(aDefault)).toEqual([]);
    expect(dominance(aStrict).length).toBeGreaterThan(0);
    expect(dominance(aStrict).every((a) => a.endsWith('|0.01'))).toBe(true);
    expect(content(aStrict)).toEqual(content(sStrict));
  });
});
