import {
  clusterStatements,
  describePolicy,
  describeThinning,
  MIGRATIONS,
  planThinning,
  retentionEnabled,
  thinningDeleteSql,
  type RetentionPolicy,
  type RunLabelSteps,
} from '../src';

/** The retention planner (pure): which label steps of which run a pass removes. */
const DAY = 24 * 60 * 60 * 1000;
const NOW = new Date('2026-12-01T00:00:00Z');

/** A run with a checkpoint every 100 steps, step s written `ageDays(s)` days before NOW. */
function run(
  steps: number[],
  ageDays: (step: number) => number,
  extra: Partial<RunLabelSteps> = {},
): RunLabelSteps {
  return {
    runId: 'r',
    checkpointSteps: steps,
    labelSteps: steps.map((step) => ({ step, rows: 10, newestMs: NOW.getTime() - ageDays(step) * DAY })),
    alertSteps: [],
    thinnedThrough: -1,
    ...extra,
  };
}
const STEPS = Array.from({ length: 20 }, (_, i) => i * 100); // 0..1900
const policy: RetentionPolicy = { fullDays: 7, fullCheckpoints: 0, keepEvery: 5 };
// steps 0..1400 are 30 days old, 1500..1900 one day old
const age = (s: number): number => (s < 1500 ? 30 : 1);

describe('planThinning', () => {
  it('off unless k >= 2 and a bound keeps the newest rows', () => {
    expect(retentionEnabled({ fullDays: 0, fullCheckpoints: 0, keepEvery: 0 })).toBe(false);
    expect(retentionEnabled({ fullDays: 7, fullCheckpoints: 0, keepEvery: 1 })).toBe(false);
    expect(retentionEnabled({ fullDays: 0, fullCheckpoints: 0, keepEvery: 10 })).toBe(false);
    expect(retentionEnabled({ fullDays: 0, fullCheckpoints: 3, keepEvery: 10 })).toBe(true);
    expect(planThinning([run(STEPS, () => 999)], { ...policy, keepEvery: 0 }, NOW)).toEqual([]);
  });

  it('keeps every k-th checkpoint of the old steps, every step of the young ones', () => {
    const [p] = planThinning([run(STEPS, age)], policy, NOW);
    expect(p.afterStep).toBe(-1);
    expect(p.throughStep).toBe(1400);
    expect(p.keptSteps).toEqual([0, 500, 1000]);
    expect(p.removeSteps).toEqual([100, 200, 300, 400, 600, 700, 800, 900, 1100, 1200, 1300, 1400]);
    expect(p.rows).toBe(120);
    expect(p.keepEvery).toBe(5);
  });

  it('counts k over the checkpoints, not the step values (irregular steps)', () => {
    const steps = [0, 7, 19, 33, 50, 61, 80, 99, 120];
    const [p] = planThinning([run(steps, (s) => (s < 120 ? 30 : 0))], { ...policy, keepEvery: 3 }, NOW);
    expect(p.keptSteps).toEqual([0, 33, 80]);
    expect(p.removeSteps).toEqual([7, 19, 50, 61, 99]);
  });

  it('keeps the newest N checkpoints whatever their age, and always the last step', () => {
    const old = () => 100;
    const [byCount] = planThinning([run(STEPS, old)], { fullDays: 0, fullCheckpoints: 4, keepEvery: 5 }, NOW);
    expect(byCount.throughStep).toBe(1500); // 1600..1900 are the newest 4
    expect(byCount.removeSteps.filter((s) => s >= 1600)).toEqual([]);
    // both bounds: a step must be older than the days AND outside the newest N
    const [both] = planThinning([run(STEPS, age)], { fullDays: 7, fullCheckpoints: 10, keepEvery: 5 }, NOW);
    expect(both.throughStep).toBe(900);
    // with the age bound alone the last step stays even when it is old
    const [last] = planThinning([run(STEPS, old)], { fullDays: 7, fullCheckpoints: 0, keepEvery: 5 }, NOW);
    expect(last.throughStep).toBe(1800);
    expect(last.removeSteps).not.toContain(1900);
  });

  it('keeps the steps where an alert episode fired or resolved', () => {
    const [p] = planThinning([run(STEPS, age, { alertSteps: [300, 700, 1700] })], policy, NOW);
    expect(p.keptSteps).toEqual([0, 300, 500, 700, 1000]);
    expect(p.removeSteps).not.toContain(300);
    expect(p.removeSteps).not.toContain(700);
  });

  it('stops at the first step that is not old (a recomputed step): the decided range stays contiguous', () => {
    const [p] = planThinning([run(STEPS, (s) => (s === 800 ? 0 : age(s)))], policy, NOW);
    expect(p.throughStep).toBe(700);
    expect(p.removeSteps).toEqual([100, 200, 300, 400, 600, 700]);
  });

  it('never decides a step twice: a rerun is empty, a later pass starts after the previous through_step', () => {
    const first = planThinning([run(STEPS, age)], policy, NOW)[0];
    expect(planThinning([run(STEPS, age, { thinnedThrough: first.throughStep })], policy, NOW)).toEqual([]);
    // ten days later steps 1500..1800 are old too (1900 is the last step)
    const later = new Date(NOW.getTime() + 10 * DAY);
    const [next] = planThinning([run(STEPS, age, { thinnedThrough: 1400 })], policy, later);
    expect(next.afterStep).toBe(1400);
    expect(next.throughStep).toBe(1800);
    expect(next.keptSteps).toEqual([1500]);
    expect(next.removeSteps).toEqual([1600, 1700, 1800]);
  });

  it('keeps label steps without a checkpoint or layer_metrics row (no ordinal to count)', () => {
    const r = run(STEPS, age, { checkpointSteps: STEPS.filter((s) => s !== 200) });
    const [p] = planThinning([r], policy, NOW);
    expect(p.keptSteps).toContain(200);
    // the ordinals of the base: 0,100,300,400,500,600(=5th) ...
    expect(p.keptSteps).toEqual([0, 200, 600, 1100]);
  });

  it('plans each run on its own', () => {
    const plans = planThinning(
      [run(STEPS, age), { ...run(STEPS, () => 0), runId: 'young' }, { ...run([], () => 0), runId: 'empty' }],
      policy,
      NOW,
    );
    expect(plans.map((p) => p.runId)).toEqual(['r']);
  });
});

describe('describeThinning', () => {
  const rec = (afterStep: number, throughStep: number, keepEvery: number) => ({
    runId: 'r',
    afterStep,
    throughStep,
    keepEvery,
    stepsRemoved: 1,
    rowsRemoved: 1,
    at: NOW.toISOString(),
  });
  it('says what was thinned in words', () => {
    expect(describeThinning([])).toBe('');
    expect(describeThinning([rec(-1, 5000, 10)])).toBe('labels: every 10th checkpoint up to step 5000');
    expect(describeThinning([rec(1400, 1800, 5), rec(-1, 1400, 5)])).toBe(
      'labels: every 5th checkpoint up to step 1800',
    );
    expect(describeThinning([rec(-1, 1400, 2), rec(1400, 3000, 3), rec(3000, 3100, 21)])).toBe(
      'labels: every 2nd checkpoint up to step 1400, every 3rd from step 1401 to 3000, every 21st from step 3001 to 3100',
    );
    expect(describeThinning([rec(-1, 10, 11), rec(10, 20, 12)])).toBe(
      'labels: every 11th checkpoint up to step 10, every 12th from step 11 to 20',
    );
  });
});

describe('retention SQL and configuration', () => {
  it('deletes from the local replicated table ON CLUSTER on a cluster', () => {
    expect(thinningDeleteSql('cm', "(run_id = 'r' AND step IN (1, 2))")).toBe(
      "ALTER TABLE `cm`.`neuron_labels` DELETE WHERE (run_id = 'r' AND step IN (1, 2))",
    );
    expect(thinningDeleteSql('cm', "(run_id = 'r' AND step IN (1))", 'c1')).toBe(
      "ALTER TABLE `cm`.`neuron_labels_local` ON CLUSTER `c1` DELETE WHERE (run_id = 'r' AND step IN (1))",
    );
  });

  it('migration 5 has a cluster form (replicated local table and a Distributed one)', () => {
    const m5 = MIGRATIONS.find((m) => m.version === 5)!;
    const [create] = m5.statements({
      database: 'cm',
      features: { ttl: false, codecs: false, lowCardinality: false },
    });
    const onCluster = clusterStatements(create, 'c1') as string[];
    expect(onCluster[0]).toMatch(/`label_thinning_local` ON CLUSTER `c1` .*ReplicatedReplacingMergeTree\(/s);
    expect(onCluster[1]).toMatch(/Distributed\(`c1`, `cm`, `label_thinning_local`, cityHash64\(run_id\)\)/);
  });

  it('no TTL in the schema: layer metrics and checkpoints are never dropped by age', () => {
    const all = MIGRATIONS.flatMap((m) =>
      m.statements({ database: 'cm', features: { ttl: true, codecs: true, lowCardinality: true } }),
    ).map((s) => (typeof s === 'string' ? s : s.sql));
    expect(all.some((s) => /\bTTL\b/.test(s))).toBe(false);
  });
});

describe('describePolicy', () => {
  it('says the policy in words, or nothing when off', () => {
    expect(describePolicy({ fullDays: 0, fullCheckpoints: 0, keepEvery: 0 })).toBe('');
    expect(describePolicy({ fullDays: 1, fullCheckpoints: 0, keepEvery: 2 })).toBe(
      'labels older than 1 day: every 2nd checkpoint kept',
    );
    expect(describePolicy({ fullDays: 30, fullCheckpoints: 500, keepEvery: 10 })).toBe(
      "labels older than 30 days and outside each run's newest 500 checkpoints: every 10th checkpoint kept",
    );
  });
});
