import { LayerAssembly, serviceDefinition, validateChunkHeader, type WireActivationChunk } from '../src';
import { testChunk } from '../src/testing';

// The bad-input tests change one field of testChunk() at a time: the default must be a whole,
// valid layer, so that what a server refuses is that one field.
describe('testChunk', () => {
  it('by default is the whole pooled float32 layer fc [120, 6] at step 0, which assembles', () => {
    const c = testChunk();
    expect(c).toMatchObject({ step: 0, layer: 'fc', shape: [120, 6], dtype: 'DTYPE_FLOAT32' });
    expect(c).toMatchObject({ pooling: 'POOLING_AVG', offset: 0, totalBytes: 2880 });
    expect(validateChunkHeader(c, 'fc')).toBe(2880);
    const a = new LayerAssembly(c);
    expect(a.append(c, 'fc')).toBe(true);
    expect(a.toActivations()).toMatchObject({ layer: 'fc', shape: [120, 6], pooling: 'avg' });
  });

  it('derives totalBytes and data from shape and dtype; keeps what is given', () => {
    expect(testChunk({ layer: 'conv1', shape: [120, 8] })).toMatchObject({ totalBytes: 3840 });
    expect(testChunk({ layer: 'conv1', shape: [120, 8] }).data.length).toBe(3840);
    expect(testChunk({ shape: [2, 4], dtype: 'DTYPE_FLOAT16' }).totalBytes).toBe(16);
    const short = testChunk({ offset: 1024, data: Buffer.alloc(1024) });
    expect(short).toMatchObject({ offset: 1024, totalBytes: 2880 });
    expect(short.data.length).toBe(1024);
    expect(testChunk({ totalBytes: 30, shape: [2, 4] }).data.length).toBe(30);
  });

  it('survives the protobuf round trip unchanged', () => {
    const def = serviceDefinition().Monitor;
    const c = testChunk({ step: 3, data: Buffer.alloc(2880, 7) });
    const back = (
      def.requestDeserialize(def.requestSerialize({ chunk: c })) as { chunk: WireActivationChunk }
    ).chunk;
    expect(back).toEqual(c);
  });
});
