import { BASELINE_BUCKET, baselineCompleteKey, baselineInitKey, type BaselineLayer } from '@cm/contracts';
import { CmError } from '@cm/core';
import { openBaselineKv } from '../src';
import { useNatsBus } from './nats';

/** The random-init baseline bucket on a real nats-server: written once, first value wins, read back exactly. */
const nats = useNatsBus('cm-baseline-kv-');

const KEY = 'a'.repeat(40);
/** A dissected layer whose every value is tagged by `tag` (which replica made it). */
function layer(tag: number, neurons = 6, concepts = 9): BaselineLayer {
  return {
    conceptIndex: Int32Array.from({ length: neurons }, (_, k) => (k * 3 + tag) % concepts),
    evidence: Float32Array.from({ length: neurons }, (_, k) => (k === 0 ? -Infinity : tag + k / 8)),
    interpretable: Array.from({ length: neurons }, (_, k) => (k + tag) % 2 === 0),
    conceptCeiling: Float32Array.from({ length: concepts }, (_, j) => tag * 10 + j / 4),
  };
}
const plain = (l: BaselineLayer) => ({
  conceptIndex: [...Array.from(l.conceptIndex)],
  evidence: [...Array.from(l.evidence)],
  interpretable: [...Array.from(l.interpretable)],
  conceptCeiling: [...Array.from(l.conceptCeiling)],
});

it('keeps each init as first written, completes once, and every handle (replica) loads the same baseline', async () => {
  const a = await openBaselineKv(nats.bus);
  const b = await openBaselineKv(nats.bus); // another replica
  expect(await a.load(KEY)).toBeUndefined();
  await a.saveInit(KEY, 0, { 'conv.1': layer(1), fc: layer(2) });
  // B dissected init 0 too (a resend after failover): A's stays
  await b.saveInit(KEY, 0, { 'conv.1': layer(7), fc: layer(7) });
  await b.saveInit(KEY, 1, { 'conv.1': layer(3), fc: layer(4) });
  const kept = await b.loadInits(KEY, [0, 1, 2], ['conv.1', 'fc']);
  expect([...kept.keys()].sort()).toEqual([0, 1]);
  expect(plain(kept.get(0)!['conv.1'])).toEqual(plain(layer(1)));
  expect(kept.get(0)!.fc.conceptIndex).toBeInstanceOf(Int32Array);
  // an init lacking a layer asked for is not complete
  expect((await a.loadInits(KEY, [0], ['conv.1', 'fc', 'other'])).size).toBe(0);

  // B completes it with its own copy of init 0: what is kept (and returned) is A's init 0
  const saved = await b.save({
    key: KEY,
    bundleId: 'bundle',
    model: 'm',
    inits: 2,
    layers: { 'conv.1': [layer(7), layer(3)], fc: [layer(7), layer(4)] },
  });
  expect(plain(saved.layers['conv.1'][0])).toEqual(plain(layer(1)));
  // a later save (another run of the architecture) changes nothing
  const again = await a.save({
    key: KEY,
    bundleId: 'bundle',
    model: 'm',
    inits: 1,
    layers: { 'conv.1': [layer(9)], fc: [layer(9)] },
  });
  expect(again.inits).toBe(2);
  for (const loaded of [await a.load(KEY), await b.load(KEY), again]) {
    expect(loaded).toBeDefined();
    expect(loaded!.inits).toBe(2);
    expect(Object.keys(loaded!.layers)).toEqual(['conv.1', 'fc']);
    expect(loaded!.layers['conv.1'].map(plain)).toEqual([plain(layer(1)), plain(layer(3))]);
    expect(loaded!.layers.fc.map(plain)).toEqual([plain(layer(2)), plain(layer(4))]);
  }
  // layer names are encoded into valid keys (the '.' of conv.1 among them)
  expect(baselineInitKey(KEY, 0, 'conv.1')).toBe(`${KEY}.init.0.conv=2e1`);
  const status = await a.kv.status();
  expect(status.history).toBe(BASELINE_BUCKET.history);
});

it('refuses a damaged value as CORRUPT and an oversized one as RESOURCE_EXHAUSTED', async () => {
  const store = await openBaselineKv(nats.bus, { maxValueBytes: 2000 });
  const key = 'b'.repeat(40);
  await store.kv.put(baselineCompleteKey(key), new TextEncoder().encode('{not json'));
  await expect(store.load(key)).rejects.toThrow(
    /random-init baseline .*\.complete \(bucket CM_BASELINES_V1\): not JSON/,
  );
  await expect(store.load(key)).rejects.toBeInstanceOf(CmError);
  await store.kv.put(
    baselineCompleteKey(key),
    new TextEncoder().encode(
      JSON.stringify({ format: 1, key, bundleId: 'x', model: 'm', inits: 2, layers: ['fc'] }),
    ),
  );
  await expect(store.load(key)).rejects.toThrow(/complete, but init\(s\) 0, 1 are missing/);
  await expect(store.saveInit(key, 0, { fc: layer(1, 400, 200) })).rejects.toThrow(
    /over the 2000-byte value limit of bucket CM_BASELINES_V1/,
  );
});
