import { RUN_STATE_BUCKET, runStateKey, type PersistedRunState } from '@cm/contracts';
import { CmError } from '@cm/core';
import { decodeRunState, encodeRunState, encodeRunStateWithin, openRunStateKv } from '../src';
import { useNatsBus } from './nats';

function state(runId: string, width = 5, recentSteps = [2, 3]): PersistedRunState {
  const top1 = (seed: number): Int32Array =>
    Int32Array.from({ length: width }, (_, k) => ((k * 7 + seed) % 1000) - 3);
  const detector = {
    fc: {
      lastStep: 3,
      diversityHistory: [0.5, 0.4],
      interpretableHistory: [0.25],
      rules: {
        concept_dominance: { firing: true, streak: 1, alertId: `${runId}/fc/concept_dominance/3` },
        diversity_floor: { firing: false, streak: 1 },
      },
    },
  };
  return {
    spec: {
      runId,
      model: 'm',
      paradigm: 'standard',
      bundleId: 'b'.repeat(16),
      layers: [{ name: 'fc', width, kind: 'dense' }],
      tags: { a: 'b' },
    },
    record: {
      kind: 'run',
      runId,
      model: 'm',
      paradigm: 'standard',
      bundleId: 'b'.repeat(16),
      layers: [{ name: 'fc', width }],
      tags: { a: 'b' },
      status: 'running',
      startedAt: '2025-01-01T00:00:00.000Z',
      time: '2025-01-01T00:00:00.000Z',
    },
    lastStep: 3,
    current: { top1: { fc: top1(3) }, detector },
    recent: recentSteps.map((step) => ({ step, before: { top1: { fc: top1(step - 1) }, detector } })),
  };
}

describe('run-state codec (pure)', () => {
  it('round-trips, Int32Arrays included (also views into larger buffers)', () => {
    const s = state('r 1');
    const big = new Int32Array(20).fill(-9);
    s.current.top1.fc = new Int32Array(big.buffer, 8, 5);
    s.current.top1.fc.set([1, -2, 2147483647, -2147483648, 0]);
    const back = decodeRunState(encodeRunState(s), 'r 1');
    expect(back).toEqual(s);
    expect(back.current.top1.fc).toBeInstanceOf(Int32Array);
    expect([...back.current.top1.fc]).toEqual([1, -2, 2147483647, -2147483648, 0]);
  });

  it('refuses damaged values as CORRUPT, naming run and problem', () => {
    const code = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(CmError);
        expect((e as CmError).code).toBe('CORRUPT');
        return (e as Error).message;
      }
      throw new Error('expected CORRUPT');
    };
    const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
    const json = JSON.parse(new TextDecoder().decode(encodeRunState(state('r'))));
    expect(code(() => decodeRunState(new TextEncoder().encode('{'), 'r'))).toMatch(
      /saved state of run r \(bucket CM_RUN_STATE_V1\): not JSON/,
    );
    expect(code(() => decodeRunState(enc({ ...json, format: 99 }), 'r'))).toMatch(/format/);
    expect(code(() => decodeRunState(enc(json), 'other'))).toMatch(
      /saved state of run other .*: it belongs to run r/,
    );
    expect(code(() => decodeRunState(enc({ ...json, current: { top1: { fc: 'AAA=' } } }), 'r'))).toMatch(
      /current layer fc: 2 bytes is not a whole number of int32/,
    );
    expect(code(() => decodeRunState(enc({ ...json, lastStep: -5 }), 'r'))).toMatch(/lastStep/);
  });

  it('drops resend history oldest first to fit the value limit; over the limit without it is RESOURCE_EXHAUSTED', () => {
    const s = state('r', 2000, [5, 6, 7, 8]);
    const full = encodeRunState(s).byteLength;
    const without = encodeRunState({ ...s, recent: [] }).byteLength;
    const perStep = (full - without) / 4;
    const fitted = decodeRunState(encodeRunStateWithin(s, without + 2.5 * perStep), 'r');
    expect(fitted.recent.map((r) => r.step)).toEqual([7, 8]);
    expect(decodeRunState(encodeRunStateWithin(s, full), 'r').recent).toHaveLength(4);
    expect(() => encodeRunStateWithin(s, without - 1)).toThrow(
      /state of run r is \d+ bytes, over the \d+-byte value limit/,
    );
  });
});

describe('openRunStateKv on nats-server', () => {
  const nats = useNatsBus('cm-kv-');

  it('saves, loads, replaces and deletes run states in one bucket with history 1', async () => {
    const store = await openRunStateKv(nats.bus);
    const runId = 'run.with dots*>';
    expect(await store.load(runId)).toBeUndefined();
    await store.save(runId, state(runId));
    expect(await store.load(runId)).toEqual(state(runId));
    const later = { ...state(runId), lastStep: 4 };
    await store.save(runId, later);
    expect((await store.load(runId))?.lastStep).toBe(4);
    // a second handle (another replica) sees the same
    const other = await openRunStateKv(nats.bus);
    expect((await other.load(runId))?.lastStep).toBe(4);
    const status = await store.kv.status();
    expect(status.history).toBe(RUN_STATE_BUCKET.history);
    expect(runStateKey(runId)).toBe('run=2ewith=20dots=2a=3e');
    expect((await store.kv.get(runStateKey(runId)))?.revision).toBeGreaterThan(0);
    await store.delete(runId);
    expect(await store.load(runId)).toBeUndefined();
    await store.delete('never saved');
    await expect(store.save('a', state('b'))).rejects.toThrow(/state of run b saved under run a/);
  });

  it('applies the configured TTL, also to an existing bucket', async () => {
    await openRunStateKv(nats.bus, { ttlMs: 2 * 3600_000 });
    expect((await nats.bus.jsm.streams.info(`KV_${RUN_STATE_BUCKET.name}`)).config.max_age).toBe(
      2 * 3600_000 * 1e6,
    );
    await openRunStateKv(nats.bus, { ttlMs: 0 });
    expect((await nats.bus.jsm.streams.info(`KV_${RUN_STATE_BUCKET.name}`)).config.max_age).toBe(0);
  });
});
