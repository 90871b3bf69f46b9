/**
 * Bad input at the gRPC boundary: each problem ends its own stream with a clear status, and the
 * service keeps serving other runs (checked after every case).
 */
import * as grpc from '@grpc/grpc-js';
import {
  createMonitorClient,
  serviceDefinition,
  runStartToWire,
  type TrainerMessage,
} from '@cm/monitor-client';
import {
  makeTestBundles,
  plantedActivations,
  rawConvActivations,
  testCheckpoint,
  testRunSpec,
  type TestBundles,
} from '@cm/engine/src/testing';
import type { WirePooling } from '@cm/protocol';
import { rejection } from '@cm/core/src/testing';
import { testChunk } from '@cm/protocol/src/testing';
import { startTestService, type TestService } from './helpers';

let bundles: TestBundles;
let svc: TestService;
beforeAll(async () => {
  bundles = await makeTestBundles();
  svc = await startTestService({ bundles, maxMessageBytes: 256 * 1024 });
});
afterAll(async () => {
  await svc.stop();
  bundles.cleanup();
});

const fast = { reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, chunkBytes: 128 * 1024 };
let runSeq = 0;

/** The service still accepts and acks a good run. */
async function serviceStillServes(): Promise<void> {
  const client = createMonitorClient({ target: svc.target, ...fast });
  try {
    await client.startRun(testRunSpec(`healthy-${runSeq++}`, bundles.bundleId));
    expect((await client.sendCheckpoint(testCheckpoint(bundles.space, 0)))?.step).toBe(0);
  } finally {
    await client.close();
  }
}

describe('through the client', () => {
  it('wrong first dimension -> INVALID_ARGUMENT naming the layer; the run goes on', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      await client.startRun(testRunSpec(`bad-d-${runSeq++}`, bundles.bundleId));
      const cp = testCheckpoint(bundles.space, 0);
      const good = cp.layers[1];
      cp.layers[1] = {
        layer: good.layer,
        shape: [good.shape[0] - 1, good.shape[1]],
        data: good.data.subarray(0, (good.shape[0] - 1) * good.shape[1]),
      };
      const e = await rejection(client.sendCheckpoint(cp));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/layer conv2: first dimension 119 must equal the probe bundle's 120 images/);
      // the same run continues with the next (good) checkpoint
      expect((await client.sendCheckpoint(testCheckpoint(bundles.space, 1)))?.step).toBe(1);
    } finally {
      await client.close();
    }
    await serviceStillServes();
  });

  it('width other than declared -> INVALID_ARGUMENT', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      await client.startRun(testRunSpec(`bad-w-${runSeq++}`, bundles.bundleId));
      const cp = testCheckpoint(bundles.space, 0);
      cp.layers[2] = plantedActivations(bundles.space, 'fc', 5, 0);
      const e = await rejection(client.sendCheckpoint(cp));
      expect(e.message).toMatch(/layer fc: last dimension 5 does not match the declared width 6/);
    } finally {
      await client.close();
    }
    await serviceStillServes();
  });

  it('NaN -> INVALID_ARGUMENT naming layer and index', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      await client.startRun(testRunSpec(`nan-${runSeq++}`, bundles.bundleId));
      const cp = testCheckpoint(bundles.space, 0);
      cp.layers[0].data[5 * 8 + 3] = NaN;
      const e = await rejection(client.sendCheckpoint(cp));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/layer conv1: value NaN at index 43 \(\[5, 3\]\) is not finite/);
    } finally {
      await client.close();
    }
    await serviceStillServes();
  });

  it('NaN in a later chunk of a raw layer (pooled as it streams in) -> the same message, naming the raw index', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      await client.startRun(testRunSpec(`nan-raw-${runSeq++}`, bundles.bundleId));
      const cp = testCheckpoint(bundles.space, 0);
      // [120, 8, 8, 12] float32: 368,640 bytes, the third of three 128 KiB chunks holds the NaN
      cp.layers[1] = rawConvActivations(bundles.space, 'conv2', 12, 0, 8);
      cp.layers[1].data[((100 * 8 + 3) * 8 + 5) * 12 + 7] = NaN;
      const e = await rejection(client.sendCheckpoint(cp));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(
        /run nan-raw-\d+ step 0 layer conv2: value NaN at index 77155 \(\[100, 3, 5, 7\]\) is not finite/,
      );
      // the same run goes on: a good raw checkpoint, streamed, is acked
      const next = testCheckpoint(bundles.space, 1);
      next.layers[1] = rawConvActivations(bundles.space, 'conv2', 12, 1, 8);
      expect((await client.sendCheckpoint(next))?.step).toBe(1);
    } finally {
      await client.close();
    }
    await serviceStillServes();
  });

  it('undeclared layer -> INVALID_ARGUMENT', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      await client.startRun(testRunSpec(`undeclared-${runSeq++}`, bundles.bundleId));
      const cp = testCheckpoint(bundles.space, 0);
      cp.layers.push(plantedActivations(bundles.space, 'head', 4, 0));
      const e = await rejection(client.sendCheckpoint(cp));
      expect(e.message).toMatch(/layer head: layer was not declared at run start/);
    } finally {
      await client.close();
    }
  });

  it('unknown bundle -> NOT_FOUND from startRun', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      const e = await rejection(client.startRun(testRunSpec(`nobundle-${runSeq++}`, 'ffffffffffffffff')));
      expect(e.code).toBe('NOT_FOUND');
      expect(e.message).toMatch(/probe bundle ffffffffffffffff is not on this concept service/);
      // the trainer learns the id and the remedy, not the server's folders nor the bundles it holds
      expect(e.message).not.toContain(bundles.root);
      expect(e.message).not.toContain(bundles.bundleId);
      const e2 = await rejection(client.startRun(testRunSpec(`badid-${runSeq++}`, 'not-an-id')));
      expect(e2.code).toBe('INVALID_ARGUMENT');
    } finally {
      await client.close();
    }
    await serviceStillServes();
  });
});

describe('errors stay small (they travel in HTTP/2 trailers)', () => {
  it('10,000 declared layers: INVALID_ARGUMENT at once, in a short message', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      const layers = Array.from({ length: 10_000 }, (_, i) => ({
        name: `layer${i}`,
        width: 4,
        kind: 'dense' as const,
      }));
      const t0 = Date.now();
      const e = await rejection(
        client.startRun({ ...testRunSpec(`wide-${runSeq++}`, bundles.bundleId), layers }),
      );
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/declares 10000 layers; at most 4096/);
      expect(e.message.length).toBeLessThan(400);
    } finally {
      await client.close();
    }
  });

  it('4,000 declared layers and one sent: the refusal is cut to its first 1,000 characters, and the channel works after', async () => {
    const client = createMonitorClient({ target: svc.target, ...fast });
    try {
      const good = testCheckpoint(bundles.space, 0).layers[0];
      const layers = [
        { name: good.layer, width: good.shape[1], kind: 'dense' as const },
        ...Array.from({ length: 3999 }, (_, i) => ({
          name: `extra-layer-${i}`,
          width: 4,
          kind: 'dense' as const,
        })),
      ];
      await client.startRun({ ...testRunSpec(`many-${runSeq++}`, bundles.bundleId), layers });
      const t0 = Date.now();
      const e = await rejection(client.sendCheckpoint({ step: 0, layers: [good], metrics: {} }));
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/missing activations of declared layer\(s\) extra-layer-0, extra-layer-1/);
      expect(e.message).toMatch(/characters in all; the rest is in the concept service log/);
      expect(e.message.length).toBeLessThan(1200);
      await client.endRun('failed').catch(() => undefined);
      // the same client (same channel) runs a good run next
      await client.startRun(testRunSpec(`after-many-${runSeq++}`, bundles.bundleId));
      expect((await client.sendCheckpoint(testCheckpoint(bundles.space, 0)))?.step).toBe(0);
    } finally {
      await client.close();
    }
    await serviceStillServes();
  });
});

describe('raw streams', () => {
  const def = serviceDefinition().Monitor;
  /** A client that sends raw bytes, to reach the server with what our client would never send. */
  function rawCall(): grpc.ClientDuplexStream<Buffer, Buffer> {
    const Raw = grpc.makeGenericClientConstructor(
      {
        Monitor: {
          path: def.path,
          requestStream: true,
          responseStream: true,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      'Raw',
    );
    const client = new Raw(svc.target, grpc.credentials.createInsecure());
    const call = (client as unknown as { Monitor: () => grpc.ClientDuplexStream<Buffer, Buffer> }).Monitor();
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    return call;
  }
  function statusOf(call: grpc.ClientDuplexStream<Buffer, Buffer>): Promise<grpc.StatusObject> {
    return new Promise((resolve) => call.on('status', resolve));
  }
  const encode = (m: TrainerMessage): Buffer => def.requestSerialize(m);

  it('malformed bytes -> INVALID_ARGUMENT', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])); // field 1, length far beyond the message
    const s = await status;
    expect(grpc.status[s.code]).toBe('INVALID_ARGUMENT');
    expect(s.details).toMatch(/malformed TrainerMessage/);
    await serviceStillServes();
  });

  it('an empty message -> INVALID_ARGUMENT', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(Buffer.alloc(0));
    const s = await status;
    expect(grpc.status[s.code]).toBe('INVALID_ARGUMENT');
    expect(s.details).toMatch(/carries none of run_start, chunk/);
  });

  it('a message over the size limit -> RESOURCE_EXHAUSTED', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(encode(runStartToWire(testRunSpec(`big-${runSeq++}`, bundles.bundleId), false)));
    call.write(encode({ chunk: testChunk({ data: Buffer.alloc(300 * 1024) }) }));
    const s = await status;
    expect(grpc.status[s.code]).toBe('RESOURCE_EXHAUSTED');
    await serviceStillServes();
  });

  it('activations before RunStart -> NOT_FOUND (unknown run)', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(encode({ chunk: testChunk() }));
    const s = await status;
    expect(grpc.status[s.code]).toBe('NOT_FOUND');
    expect(s.details).toMatch(/before RunStart/);
  });

  it('an unknown pooling value -> INVALID_ARGUMENT, like an unknown dtype (not read as avg)', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(encode(runStartToWire(testRunSpec(`pool-${runSeq++}`, bundles.bundleId), false)));
    call.write(encode({ chunk: testChunk({ pooling: 7 as unknown as WirePooling }) }));
    const s = await status;
    expect(grpc.status[s.code]).toBe('INVALID_ARGUMENT');
    expect(s.details).toMatch(/layer fc: pooling 7 is not avg or max/);
  });

  it('chunks out of order -> INVALID_ARGUMENT', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(encode(runStartToWire(testRunSpec(`order-${runSeq++}`, bundles.bundleId), false)));
    call.write(encode({ chunk: testChunk({ offset: 1024, data: Buffer.alloc(1024) }) }));
    const s = await status;
    expect(grpc.status[s.code]).toBe('INVALID_ARGUMENT');
    expect(s.details).toMatch(/chunk offset 1024, expected 0/);
  });

  it('checkpoint ended before its layer was complete -> INVALID_ARGUMENT', async () => {
    const call = rawCall();
    const status = statusOf(call);
    call.write(encode(runStartToWire(testRunSpec(`short-${runSeq++}`, bundles.bundleId), false)));
    call.write(encode({ chunk: testChunk({ data: Buffer.alloc(1000) }) }));
    call.write(encode({ checkpointEnd: { step: 0, metrics: {} } }));
    const s = await status;
    expect(grpc.status[s.code]).toBe('INVALID_ARGUMENT');
    expect(s.details).toMatch(/checkpoint ended after 1000 of 2880 bytes/);
  });
});

it('Health answers SERVING with the number of open streams', async () => {
  const h = await svc.server.health();
  expect(h.status).toBe('SERVING');
});
