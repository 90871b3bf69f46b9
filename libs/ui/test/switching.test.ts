import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LabelsRecord, RunRecord } from '@cm/contracts';
import { BundleDirectory } from '@cm/probe';
import * as Q from '@cm/queries';
import { openStore, type Store } from '@cm/store';
import { switchingView, type ViewContext } from '../src/views';

/**
 * The layer view's switching table on chDB: a layer recorded with previous concepts (migration 6)
 * is read from its switch rows, a layer recorded before it (every row '') from its sequences, and
 * both say the same as the sequences would.
 */
describe('switchingView: recorded switches, or the sequences for layers recorded before migration 6', () => {
  const LAYER = 'conv1';
  const WIDTH = 5;
  const STEPS = [0, 100, 200, 300, 400, 500];
  const CONCEPTS = ['dog', 'cat', 'sky', 'grid'];
  const conceptAt = (k: number, i: number): string => CONCEPTS[Math.floor((i * k) / 2) % CONCEPTS.length];
  const run = (runId: string): RunRecord => ({
    kind: 'run',
    runId,
    model: 'm',
    paradigm: 'standard',
    bundleId: '0123456789abcdef',
    layers: [{ name: LAYER, width: WIDTH }],
    tags: {},
    status: 'running',
    startedAt: new Date(1_700_000_000_000).toISOString(),
    time: new Date(1_700_000_000_000).toISOString(),
  });
  const labels = (runId: string, i: number, withPrevious: boolean): LabelsRecord => ({
    kind: 'labels',
    runId,
    layer: LAYER,
    step: STEPS[i],
    part: 0,
    parts: 1,
    time: new Date(1_700_000_000_000 + i * 1000).toISOString(),
    labels: Array.from({ length: WIDTH }, (_, k) => ({
      neuron: k,
      concept: conceptAt(k, i),
      category: 'c',
      score: 0.5,
      interpretable: true,
      dead: false,
      topConcepts: [conceptAt(k, i)],
      topScores: [0.5],
      topImages: [],
      x: 0,
      y: 0,
      ...(withPrevious ? { previousConcept: i === 0 ? '' : conceptAt(k, i - 1) } : {}),
    })),
  });
  /** Every neuron's switches and concept path, by switches then neuron (what the table shows). */
  const expected = Array.from({ length: WIDTH }, (_, k) => {
    const seq = STEPS.map((_, i) => conceptAt(k, i));
    return {
      neuron: k,
      switches: seq.slice(1).filter((c, i) => c !== seq[i]).length,
      concepts: [...new Set(seq)].join(' > '),
    };
  }).sort((a, b) => b.switches - a.switches || a.neuron - b.neuron);

  let dir: string;
  let store: Store;
  let ctx: ViewContext;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cm-ui-switching-'));
    store = await openStore({ kind: 'chdb', path: join(dir, 'store'), database: 'cm_ui_switching' });
    await store.migrate();
    await store.insertRecords([
      run('recorded'),
      run('legacy'),
      ...STEPS.map((_, i) => labels('recorded', i, true)),
      ...STEPS.map((_, i) => labels('legacy', i, false)),
    ]);
    ctx = { store, bundles: new BundleDirectory(join(dir, 'bundles')) };
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a layer recorded with previous concepts is answered from its switch rows', async () => {
    expect(new Set(expected.map((e) => e.switches)).size).toBeGreaterThan(1);
    const answer = await switchingView(ctx, 'recorded', LAYER);
    expect(answer).toEqual({ switching: expected, from: 'recorded' });
    // asked again: the layer is known to be recorded (no probe), same answer
    expect(await switchingView(ctx, 'recorded', LAYER)).toEqual(answer);
  });

  it('a layer recorded before migration 6 is answered from its sequences, not as "no switches"', async () => {
    const answer = await switchingView(ctx, 'legacy', LAYER);
    expect(answer).toEqual({ switching: expected, from: 'sequences' });
    // what the switch rows alone would say of it: nothing switched
    const rows = await store.query<{ switches: string }>(
      Q.switchingNeuronsSql({ run: 'legacy', layer: LAYER }),
    );
    expect(rows.map((r) => Number(r.switches))).toEqual(Array.from({ length: WIDTH }, () => 0));
  });
});
