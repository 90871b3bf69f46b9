/**
 * Raw [D, H, W, C] float16 layers are pooled as their chunks arrive (issue 15), like float32 ones,
 * through the real server over loopback gRPC: the session never assembles them (no
 * poolReceivedLayer call), and the labels are those of the same checkpoint widened to float32 and
 * processed whole.
 */
import { setLogLevel } from '@cm/core';
import type { CheckpointData, CmRecord, MonitoredLayer } from '@cm/contracts';
import { ConceptEngine, MemorySink } from '@cm/engine';
import {
  argmaxDissector,
  plantedActivations,
  rawConvActivations,
  testRunSpec,
  useTestBundles,
} from '@cm/engine/src/testing';
import { decodeFloats, float32ToFloat16 } from '@cm/protocol';
import { startTestService } from './service';

setLogLevel('warn');
const bundles = useTestBundles();

const width = 96;
const layers: MonitoredLayer[] = [
  { name: 'conv', width, kind: 'conv' },
  { name: 'fc', width: 32, kind: 'dense' },
];

const labelsOf = (records: CmRecord[]): string[] =>
  records.flatMap((r) =>
    r.kind === 'labels' ? r.labels.map((l) => `${r.layer}:${l.neuron}:${l.concept}:${l.score}`) : [],
  );

it('a raw float16 layer is streamed into pooling and labelled as the widened checkpoint would be', async () => {
  const sink = new MemorySink();
  const engine = new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector(40) });
  const assembled: string[] = [];
  const streamedAs: string[] = [];
  const poolReceivedLayer = engine.poolReceivedLayer.bind(engine);
  engine.poolReceivedLayer = (runId, step, layer) => {
    assembled.push(layer.layer);
    return poolReceivedLayer(runId, step, layer);
  };
  const poolingStream = engine.poolingStream.bind(engine);
  engine.poolingStream = (runId, step, header) => {
    const stream = poolingStream(runId, step, header);
    if (stream) streamedAs.push(`${header.layer}:${header.dtype}`);
    return stream;
  };
  // small chunks: the layer arrives in several, split inside values
  const { client, close } = await startTestService(
    { engine, sink, maxMessageBytes: 1 << 20 },
    { dtype: 'float16', chunkBytes: 4099 },
  );
  const cp: CheckpointData = {
    step: 1,
    layers: [
      rawConvActivations(bundles.space, 'conv', width, 1),
      plantedActivations(bundles.space, 'fc', 32, 1),
    ],
    metrics: {},
  };
  try {
    await client.startRun(testRunSpec('f16-stream', bundles.bundleId, layers));
    expect((await client.sendCheckpoint(cp))?.step).toBe(1);
    expect(streamedAs).toEqual(['conv:float16']);
    expect(assembled).toEqual(['fc']); // the dense layer is assembled, the raw one never
  } finally {
    await close();
  }
  // the same values as the service received them (float16), widened and processed whole
  const widened: CheckpointData = {
    ...cp,
    layers: cp.layers.map((l) => ({
      ...l,
      data: decodeFloats(new Uint8Array(float32ToFloat16(l.data).buffer), 'DTYPE_FLOAT16'),
    })),
  };
  const whole = new ConceptEngine({ bundles: bundles.bundles, dissector: argmaxDissector(40) });
  await whole.startRun(testRunSpec('f16-stream', bundles.bundleId, layers));
  const expected = labelsOf((await whole.processCheckpoint('f16-stream', widened)).records);
  expect(expected).toHaveLength(width + 32);
  expect(labelsOf(sink.records)).toEqual(expected);
}, 30_000);
