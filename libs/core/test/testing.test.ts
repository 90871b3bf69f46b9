import { CmError } from '../src';
import { rejection } from '../src/testing';

describe('rejection', () => {
  const e = new CmError('INVALID_ARGUMENT', 'layer fc: bad');
  it('hands back the CmError a promise rejects with, or a function throws', async () => {
    await expect(rejection(Promise.reject(e))).resolves.toBe(e);
    await expect(
      rejection(() => {
        throw e;
      }),
    ).resolves.toBe(e);
    await expect(rejection(async () => Promise.reject(e))).resolves.toBe(e);
  });
  it('fails when the promise resolves or the function returns', async () => {
    await expect(rejection(Promise.resolve(1))).rejects.toThrow('expected a rejection');
    await expect(rejection(() => 1)).rejects.toThrow('expected a rejection');
  });
});
