/**
 * For tests only (import '@cm/core/src/testing'; not exported from the package index).
 */
import { CmError } from './errors';

/**
 * The CmError that `p` rejects with (or that the function throws, synchronously or not); the test
 * fails when it succeeds, or fails with anything but a CmError.
 */
export async function rejection(p: Promise<unknown> | (() => unknown)): Promise<CmError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(CmError);
    return e as CmError;
  }
  throw new Error('expected a rejection');
}
