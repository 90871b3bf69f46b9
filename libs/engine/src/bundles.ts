import { notFound } from '@cm/core';
import type { BundleSource, EngineBundle } from './engine';

/**
 * Bundles an all-in-one engine knows: ones loaded from a folder anywhere (`--probe <folder>`,
 * watch({ probe: folder })) first, then the bundle directory. Without it a bundle outside the
 * directory is NOT_FOUND at run start and the run goes unmonitored.
 */
export class BundleRegistry implements BundleSource {
  private readonly loaded = new Map<string, EngineBundle>();

  constructor(private readonly fallback?: BundleSource) {}

  add(bundle: EngineBundle): void {
    this.loaded.set(bundle.id, bundle);
  }

  get(id: string): EngineBundle | Promise<EngineBundle> {
    const b = this.loaded.get(id);
    if (b) return b;
    if (this.fallback) return this.fallback.get(id);
    throw notFound(`probe bundle ${id} is not loaded`, { bundleId: id }, 'pass the bundle folder');
  }
}
