import sharp from 'sharp';
import { invalidArgument } from '@cm/core';
import type { BundleDirectory } from '@cm/probe';
import { missing } from './views';

/** Thumbnail edge in pixels: the bundle's images are small (e.g. 32 px), scaled up without blur. */
export const THUMBNAIL_SIZES = [32, 64, 96, 128, 192] as const;
export type ThumbnailSize = (typeof THUMBNAIL_SIZES)[number];

const cache = new Map<string, Buffer>();
const CACHE_MAX = 2048;

/**
 * Probe image `index` of bundle `bundleId` as a PNG of size x size (nearest-neighbour scaling keeps
 * the pixels a probe image is made of). Unknown bundle or an index out of range: NOT_FOUND.
 */
export async function bundleThumbnail(
  bundles: BundleDirectory,
  bundleId: string,
  index: number,
  size: ThumbnailSize = 96,
): Promise<Buffer> {
  if (!/^[0-9a-f]{16}$/.test(bundleId)) throw missing('bundle', bundleId, 'a bundle id is 16 hex digits');
  if (!(THUMBNAIL_SIZES as readonly number[]).includes(size))
    throw invalidArgument(`thumbnail size ${size} is not one of ${THUMBNAIL_SIZES.join(', ')}`, { size });
  const key = `${bundleId}/${index}/${size}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let bundle;
  try {
    bundle = bundles.get(bundleId);
  } catch {
    throw missing('bundle', bundleId, `bundles are read from ${bundles.root}`);
  }
  const [count, h, w] = bundle.imageShape;
  if (!Number.isInteger(index) || index < 0 || index >= count)
    throw missing('image', String(index), `bundle ${bundleId} has ${count} images (0..${count - 1})`);
  const pixels = bundle.images.subarray(index * h * w * 3, (index + 1) * h * w * 3);
  const png = await sharp(Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength), {
    raw: { width: w, height: h, channels: 3 },
  })
    .resize(size, size, { kernel: 'nearest', fit: 'fill' })
    .png()
    .toBuffer();
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(key, png);
  return png;
}
