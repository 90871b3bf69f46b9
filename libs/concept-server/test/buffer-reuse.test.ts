/**
 * The pooled layers' buffers are reused across checkpoints (issue 15, dissect's buffer-pool.ts),
 * through the real server over loopback gRPC: a checkpoint's buffers go back only after its
 * records are published and its ack is sent, so a checkpoint received while the previous one is
 * still being published gets buffers of its own; once both are acknowledged, a later checkpoint
 * gets the same buffers again instead of new ones. And the session's memory log (debug level) that
 * the buffers were measured with.
 */
import { setLogFormat, setLogLevel, setSink } from '@cm/core';
import type { CheckpointData, CmRecord, LayerActivations, MonitoredLayer } from '@cm/contracts';
import { ConceptEngine, type RecordSink } from '@cm/engine';
import {
  argmaxDissector,
  plantedActivations,
  rawConvActivations,
  testRunSpec,
  useTestBundles,
} from '@cm/engine/src/testing';
import { startTestService } from './service';

setLogLevel('warn');
const bundles = useTestBundles();

const width = 1024;
// a raw [D, 2, 2, C] layer (pooled as its chunks arrive: engine.poolingStream) and a dense one
// (assembled, then pooled: engine.poolReceivedLayer)
const layers: MonitoredLayer[] = [
  { name: 'first', width, kind: 'conv' },
  { name: 'second', width, kind: 'dense' },
];
const checkpoint = (step: number): CheckpointData => ({
  step,
  layers: [
    rawConvActivations(bundles.space, 'first', width, step),
    plantedActivations(bundles.space, 'second', width, step),
  ],
  metrics: {},
});

/** Each neuron's concept per layer at `step`, from label records. */
function conceptsAt(records: CmRecord[], step: number): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of records)
    if (r.kind === 'labels' && r.step === step)
      for (const l of r.labels) (out[r.layer] ??= [])[l.neuron] = l.concept;
  return out;
}

/** A sink that holds step 1's records until `open()`, so that step 2 arrives while step 1 is unpublished. */
class GatedSink implements RecordSink {
  readonly records: CmRecord[] = [];
  readonly published = new Set<number>();
  private opened!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.opened = resolve));
  private reachedGate!: () => void;
  readonly reached = new Promise<void>((resolve) => (this.reachedGate = resolve));
  open(): void {
    this.opened();
  }
  async write(records: CmRecord[]): Promise<void> {
    const checkpoint = records.find((r) => r.kind === 'checkpoint');
    if (checkpoint?.kind === 'checkpoint' && checkpoint.step === 1) {
      this.reachedGate();
      await this.gate;
    }
    this.records.push(...records);
    if (checkpoint?.kind === 'checkpoint') this.published.add(checkpoint.step);
  }
}

const until = async (ok: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(ok()).toBe(true);
};

it('a checkpoint in flight never gets the buffers of one not yet published; later ones reuse them', async () => {
  const sink = new GatedSink();
  const engine = new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector(40) });
  // the buffer each received layer was pooled into, by step
  const pooledInto = new Map<number, SharedArrayBuffer[]>();
  const note = (step: number, pooled: LayerActivations): LayerActivations => {
    expect(pooled.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    pooledInto.set(step, [...(pooledInto.get(step) ?? []), pooled.data.buffer as SharedArrayBuffer]);
    return pooled;
  };
  const poolReceivedLayer = engine.poolReceivedLayer.bind(engine);
  engine.poolReceivedLayer = (runId, step, layer) => note(step, poolReceivedLayer(runId, step, layer));
  const poolingStream = engine.poolingStream.bind(engine);
  engine.poolingStream = (runId, step, header) => {
    const stream = poolingStream(runId, step, header);
    return stream && { write: (bytes) => stream.write(bytes), finish: () => note(step, stream.finish()) };
  };
  // a release must come after that step's records are in the sink
  const releasedBeforePublished: number[] = [];
  const releaseLayers = engine.releaseLayers.bind(engine);
  engine.releaseLayers = (released) => {
    for (const [step, buffers] of pooledInto)
      if (
        released.some((l) => buffers.includes(l.data.buffer as SharedArrayBuffer)) &&
        !sink.published.has(step)
      )
        releasedBeforePublished.push(step);
    releaseLayers(released);
  };
  const { client, close } = await startTestService({ engine, sink, maxMessageBytes: 8 * 1024 * 1024 });
  try {
    await client.startRun(testRunSpec('reuse', bundles.bundleId, layers));
    const first = client.sendCheckpoint(checkpoint(1));
    await sink.reached; // step 1 dissected, its records held in the sink
    const second = client.sendCheckpoint(checkpoint(2));
    await until(() => (pooledInto.get(2) ?? []).length === 2); // step 2 received and pooled meanwhile
    const [a, b] = [pooledInto.get(1)!, pooledInto.get(2)!];
    expect(new Set([...a, ...b]).size).toBe(4); // no buffer shared between the two in flight
    sink.open();
    expect((await first)?.step).toBe(1);
    expect((await second)?.step).toBe(2);
    expect((await client.sendCheckpoint(checkpoint(3)))?.step).toBe(3);
    const c = pooledInto.get(3)!;
    expect(c).toHaveLength(2);
    expect(c[0]).not.toBe(c[1]);
    // both given back after their acks: step 3 takes two of those four, no new buffer
    for (const buffer of c) expect([...a, ...b]).toContain(buffer);
    expect(releasedBeforePublished).toEqual([]);
    // reused buffers hold no stale values: step 3's labels are those of an engine that never reused one
    const fresh = new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector(40) });
    await fresh.startRun(testRunSpec('fresh', bundles.bundleId, layers));
    const expected = conceptsAt((await fresh.processCheckpoint('fresh', checkpoint(3))).records, 3);
    expect(expected.first).toHaveLength(width);
    expect(conceptsAt(sink.records, 3)).toEqual(expected);
    expect(conceptsAt(sink.records, 2)).not.toEqual(expected); // the steps' labels differ (so the check can fail)
  } finally {
    await close();
  }
}, 30_000);

it('at debug level the session logs its memory at each stage of a checkpoint; above it, nothing', async () => {
  const lines: string[] = [];
  const previous = setSink((line) => lines.push(line));
  setLogFormat('json');
  const { client, close } = await startTestService({
    engine: new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector(40) }),
    sink: new GatedSink(),
    maxMessageBytes: 8 * 1024 * 1024,
  });
  const stages = (): string[] =>
    lines
      .map((l) => JSON.parse(l) as { msg: string; rssMiB?: number })
      .filter((e) => e.msg.startsWith('memory ') && typeof e.rssMiB === 'number' && e.rssMiB > 0)
      .map((e) => e.msg);
  try {
    await client.startRun(testRunSpec('memory-log', bundles.bundleId, layers));
    setLogLevel('info');
    expect((await client.sendCheckpoint(checkpoint(2)))?.step).toBe(2);
    expect(stages()).toEqual([]);
    setLogLevel('debug');
    expect((await client.sendCheckpoint(checkpoint(3)))?.step).toBe(3);
    expect(stages()).toEqual([
      'memory first chunk',
      'memory layer received',
      'memory layer received',
      'memory checkpoint end',
      'memory dissected',
      'memory published and acked',
    ]);
  } finally {
    setLogLevel('warn');
    setLogFormat('text');
    setSink(previous);
    await close();
  }
}, 30_000);
