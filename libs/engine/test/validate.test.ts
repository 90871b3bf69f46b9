import { STORE_LIMITS, type MonitoredLayer, type RunSpec } from '@cm/contracts';
import { CmError } from '@cm/core';
import { validateCheckpoint, validateRunSpec } from '../src/validate';

/** The boundary refuses what the store cannot hold, with a short message (it travels in a gRPC trailer). */
const layer: MonitoredLayer = { name: 'conv1', width: 2, kind: 'dense' };
const spec = (over: Partial<RunSpec> = {}): RunSpec => ({
  runId: 'r',
  model: 'm',
  paradigm: 'standard',
  bundleId: 'b',
  layers: [layer],
  tags: {},
  ...over,
});
const declared = new Map([[layer.name, layer]]);
const checkpoint = (step: number) => ({
  step,
  metrics: { loss: 1 },
  layers: [{ layer: 'conv1', shape: [3, 2], data: new Float32Array(6) }],
});

function refusal(f: () => void): CmError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CmError);
    expect((e as CmError).code).toBe('INVALID_ARGUMENT');
    return e as CmError;
  }
  throw new Error('expected a refusal');
}

describe('store limits at the boundary', () => {
  it('accepts the largest step the store holds and refuses 2^32', () => {
    expect(() => validateCheckpoint('r', declared, 3, checkpoint(STORE_LIMITS.maxStep))).not.toThrow();
    const e = refusal(() => validateCheckpoint('r', declared, 3, checkpoint(2 ** 32)));
    expect(e.message).toBe('run r: checkpoint step must be an integer from 0 to 4294967295, got 4294967296');
  });

  it('refuses 10,000 declared layers in one short message', () => {
    const layers = Array.from({ length: 10_000 }, (_, i) => ({
      name: `layer${i}`,
      width: 8,
      kind: 'dense' as const,
    }));
    const e = refusal(() => validateRunSpec(spec({ layers })));
    expect(e.message).toBe('run r: declares 10000 layers; at most 4096 can be monitored in one run');
    expect(JSON.stringify(e.context).length).toBeLessThan(200);
  });

  it('bounds what a refusal repeats of an oversized value', () => {
    const runId = 'x'.repeat(100_000);
    const e = refusal(() => validateRunSpec(spec({ runId })));
    expect(e.message).toBe('run id is longer than 256 characters');
    expect(JSON.stringify(e.context).length).toBeLessThan(200);
    const tag = refusal(() => validateRunSpec(spec({ tags: { note: 'y'.repeat(5000) } })));
    expect(tag.message).toMatch(/tag note is too long/);
  });

  it('refuses widths past UInt32 and empty or oversized metric names', () => {
    refusal(() => validateRunSpec(spec({ layers: [{ ...layer, width: 2 ** 32 }] })));
    const cp = { ...checkpoint(1), metrics: { ['m'.repeat(300)]: 1 } };
    expect(refusal(() => validateCheckpoint('r', declared, 3, cp)).message).toMatch(
      /metric names must be 1\.\.256/,
    );
  });
});
