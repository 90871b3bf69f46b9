/**
 * What the JetStream KV buckets of the bus (run state, random-init baselines) open the same way:
 * the replicas setting checked, the bucket opened or created (UNAVAILABLE when JetStream is not
 * there), and the value limit taken from the server's max_payload.
 */
import { StorageType, type KV, type KvOptions } from 'nats';
import { CmError, errorMessage } from '@cm/core';
import type { Bus } from './bus';

/** `replicas` (default 1), refused unless a positive integer; `what` names the bucket in the error. */
export function bucketReplicas(what: string, replicas = 1): number {
  if (!Number.isInteger(replicas) || replicas < 1)
    throw new CmError(
      'INVALID_ARGUMENT',
      `${what} bucket replicas must be a positive integer, got ${replicas}`,
    );
  return replicas;
}

/**
 * Open (creating if needed) bucket `bucket` with file storage, `options` on top; `then` runs on it
 * before it is returned, and what it throws is reported as the bucket not opening.
 */
export async function openBucket(
  bus: Pick<Bus, 'js'>,
  what: string,
  bucket: { name: string; history: number },
  options: Partial<KvOptions>,
  then: (kv: KV) => Promise<void> = async () => undefined,
): Promise<KV> {
  try {
    const kv = await bus.js.views.kv(bucket.name, {
      history: bucket.history,
      storage: StorageType.File,
      ...options,
    });
    await then(kv);
    return kv;
  } catch (e) {
    throw new CmError('UNAVAILABLE', `cannot open the ${what} bucket ${bucket.name}: ${errorMessage(e)}`, {
      cause: e,
      hint: 'is JetStream enabled on the NATS server (nats-server -js)?',
    });
  }
}

/** The largest value to put: `configured`, else the server's max_payload less room for the message headers and subject around the value. */
export const bucketValueLimit = (bus: Pick<Bus, 'nc'>, configured?: number): number =>
  configured ?? Math.max(1024, (bus.nc.info?.max_payload ?? 1024 * 1024) - 4096);
