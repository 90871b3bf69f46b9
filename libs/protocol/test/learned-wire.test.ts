/**
 * LayerSummary.learned_fraction / has_learned_fraction (the learned-concept share, docs/dissect.md):
 * through the real protobuf encoding of CheckpointAck (the service definition's serializers), a
 * known share (0 included) comes back as itself and an unknown one (null) as null, not 0.
 */
import type { CheckpointResult } from '@cm/contracts';
import { resultFromWire, resultToWire, serviceDefinition, type WireCheckpointAck } from '../src';

const layer = (name: string, learnedFraction: number | null | undefined) => ({
  layer: name,
  learnedFraction,
  interpretableFraction: 0.75,
  distinctConceptShare: 0.5,
  labelEntropy: 0.25,
  topConcepts: [{ concept: 'red', count: 3 }],
});

it('round-trips the learned share through the CheckpointAck encoding: a number, 0, and unknown (null)', () => {
  const monitor = serviceDefinition().Monitor;
  const result: CheckpointResult = {
    step: 9,
    layers: [layer('a', 0.375), layer('b', 0), layer('c', null), layer('d', undefined)],
    alerts: [],
  };
  const bytes = monitor.responseSerialize({ checkpointAck: resultToWire(result) });
  const back = monitor.responseDeserialize(bytes) as { checkpointAck: WireCheckpointAck };
  const layers = resultFromWire(back.checkpointAck).layers;
  expect(layers.map((l) => [l.layer, l.learnedFraction, l.interpretableFraction])).toEqual([
    ['a', 0.375, 0.75],
    ['b', 0, 0.75],
    ['c', null, 0.75],
    ['d', null, 0.75],
  ]);
});
