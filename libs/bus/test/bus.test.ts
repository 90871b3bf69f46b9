import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  fromLabelColumns,
  isLabelsColumnsRecord,
  MAX_MESSAGE_BYTES,
  STREAM,
  validateWireRecord,
  type AlertRecord,
  type LabelsRecord,
} from '@cm/contracts';
import { freePort } from '@cm/core';
import { startNats, type ManagedServer } from '@cm/stack';
import { connectBus, messageIdFor, toMessages, type Bus } from '../src';

function labels(width: number, conceptLength = 8): LabelsRecord {
  return {
    kind: 'labels',
    runId: 'run.with dots*',
    layer: 'conv1',
    step: 10,
    part: 0,
    parts: 1,
    labels: Array.from({ length: width }, (_, neuron) => ({
      neuron,
      concept: 'c'.repeat(conceptLength),
      category: 'object',
      score: 0.5,
      interpretable: true,
      dead: false,
      topConcepts: ['a', 'b', 'c', 'd', 'e'],
      topScores: [0.5, 0.4, 0.3, 0.2, 0.1],
      topImages: [7, 3, 0, 12, 5, 1, 9, 4],
      x: 0.123456,
      y: -0.654321,
    })),
    time: '2026-01-01T00:00:00.000Z',
  };
}

const alert = (state: AlertRecord['state']): AlertRecord => ({
  kind: 'alert',
  alertId: 'a1',
  runId: 'r1',
  layer: 'fc',
  step: 5,
  rule: 'concept_dominance',
  state,
  severity: 'critical',
  value: 0.8,
  threshold: 0.6,
  message: 'one concept dominates',
  time: '2026-01-01T00:00:00.000Z',
});

describe('toMessages (pure)', () => {
  it('keeps a small record whole with its natural-key id', () => {
    const [m] = toMessages([labels(3)]);
    expect(m.msgId).toBe(messageIdFor(labels(3)));
    expect(JSON.parse(new TextDecoder().decode(m.body))).toEqual(labels(3));
  });

  it('splits a labels record over the limit into parts that each fit and cover every neuron once', () => {
    const big = labels(500, 40);
    const maxBytes = 20_000;
    const parts = toMessages([big], maxBytes);
    expect(parts.length).toBeGreaterThan(1);
    const neurons: number[] = [];
    parts.forEach((p, i) => {
      expect(p.body.byteLength).toBeLessThanOrEqual(maxBytes);
      const r = p.record as LabelsRecord;
      expect(r).toMatchObject({ part: i, parts: parts.length });
      neurons.push(...r.labels.map((l) => l.neuron));
    });
    expect(neurons).toEqual(big.labels.map((l) => l.neuron));
    expect(new Set(parts.map((p) => p.msgId)).size).toBe(parts.length);
    // a resend splits the same way: same ids, so JetStream drops it
    expect(toMessages([big], maxBytes).map((p) => p.msgId)).toEqual(parts.map((p) => p.msgId));
  });

  it('encodes labels in the compact columnar form on request, with the same ids and under 40% of the bytes', () => {
    const small = labels(3);
    const [rowsForm] = toMessages([small]);
    const [columnsForm] = toMessages([small], MAX_MESSAGE_BYTES, 'columns');
    expect(columnsForm.msgId).toBe(rowsForm.msgId);
    const decoded = validateWireRecord(JSON.parse(new TextDecoder().decode(columnsForm.body)));
    expect(isLabelsColumnsRecord(decoded) && fromLabelColumns(decoded.columns)).toEqual(small.labels);
    const big = labels(500, 40);
    const rowsBytes = toMessages([big]).reduce((n, m) => n + m.body.byteLength, 0);
    const columnsBytes = toMessages([big], MAX_MESSAGE_BYTES, 'columns').reduce(
      (n, m) => n + m.body.byteLength,
      0,
    );
    // strings are stored once; the evidence image indices are numbers in both forms
    expect(columnsBytes * 2.5).toBeLessThan(rowsBytes);
  });

  it('splits a columnar labels record over the limit into parts that fit and cover every neuron once', () => {
    const big = labels(2000, 8);
    big.labels.forEach((l, i) => (l.concept = `concept-${i}`)); // distinct strings: the columnar form is big too
    const maxBytes = 20_000;
    const parts = toMessages([big], maxBytes, 'columns');
    expect(parts.length).toBeGreaterThan(1);
    const neurons: number[] = [];
    parts.forEach((p, i) => {
      expect(p.body.byteLength).toBeLessThanOrEqual(maxBytes);
      const decoded = validateWireRecord(JSON.parse(new TextDecoder().decode(p.body)));
      if (!isLabelsColumnsRecord(decoded)) throw new Error('expected the columnar form');
      expect(decoded).toMatchObject({ part: i, parts: parts.length });
      expect(p.msgId).toBe(messageIdFor(p.record));
      neurons.push(...decoded.columns.neuron);
    });
    expect(neurons).toEqual(big.labels.map((l) => l.neuron));
    expect(toMessages([big], maxBytes, 'columns').map((p) => p.msgId)).toEqual(parts.map((p) => p.msgId));
  });

  it('refuses a non-label record over the limit', () => {
    const run = {
      kind: 'checkpoint' as const,
      runId: 'r',
      step: 1,
      metrics: { x: 1 },
      time: '2026-01-01T00:00:00Z',
    };
    expect(() => toMessages([run], 10)).toThrow(/over the 10-byte message limit/);
  });
});

describe('bus on a real nats-server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-bus-'));
  let nats: ManagedServer;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startNats({ dir, port: await freePort(), monitorPort: await freePort() });
    bus = await connectBus({ url: nats.url, name: 'bus-test' });
  }, 60_000);
  afterAll(async () => {
    await bus?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the stream idempotently with the duplicate window', async () => {
    await bus.ensureStream();
    await bus.ensureStream();
    const info = await bus.jsm.streams.info(STREAM.name);
    expect(info.config.subjects).toEqual([...STREAM.subjects]);
    expect(info.config.duplicate_window).toBe(STREAM.duplicateWindowMs * 1_000_000);
  });

  it('stores a resend once, and splits a large layer into messages under the limit', async () => {
    const before = (await bus.jsm.streams.info(STREAM.name)).state.messages;
    const big = labels(6000, 60); // ~1.5 MB of JSON
    const expectedParts = toMessages([big]).length;
    expect(expectedParts).toBeGreaterThan(1);
    await bus.publishRecords([big, labels(3)]);
    await bus.publishRecords([big, labels(3)]); // resend: every id is a duplicate
    const info = await bus.jsm.streams.info(STREAM.name);
    expect(info.state.messages - before).toBe(expectedParts + 1);
    const last = await bus.jsm.streams.getMessage(STREAM.name, { seq: info.state.last_seq });
    expect(last.subject).toBe('cm.v1.labels.run~2ewith~20dots~2a');
    expect(last.data.byteLength).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });

  it('delivers alerts to live subscribers', async () => {
    const got: AlertRecord[] = [];
    const unsubscribe = bus.subscribeAlerts((a) => got.push(a));
    await bus.nc.flush();
    await bus.publishRecords([alert('firing'), alert('resolved')]);
    await bus.nc.flush();
    for (let i = 0; i < 50 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    unsubscribe();
    expect(got.map((a) => a.state)).toEqual(['firing', 'resolved']);
  });

  it('names the server when it cannot connect', async () => {
    const port = await freePort();
    await expect(connectBus({ url: `nats://127.0.0.1:${port}` })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});
