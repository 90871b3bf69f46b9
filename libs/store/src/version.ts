/**
 * Server versions and the features we switch on by version. One schema runs everywhere; only
 * storage extras differ. The thresholds are deliberately conservative (20.3, the first LTS where all
 * three are stable and non-experimental): TTL arrived in 19.6, codecs in 19.1, LowCardinality left
 * "experimental" during 19.x, and 18.16 (Debian's package) has none of them usable by default.
 */
export interface ServerVersion {
  major: number;
  minor: number;
  text: string;
}

export interface StoreFeatures {
  /** The server has table TTLs. Not used by the schema: label retention is a job on every version (retention.ts). */
  ttl: boolean;
  /** Column codecs (Delta/DoubleDelta + ZSTD) for time and float columns. */
  codecs: boolean;
  /** LowCardinality(String) for layer, concept, category... */
  lowCardinality: boolean;
}

export function parseServerVersion(text: string): ServerVersion {
  const m = /^(\d+)\.(\d+)/.exec(text.trim());
  if (!m) return { major: 0, minor: 0, text };
  return { major: Number(m[1]), minor: Number(m[2]), text };
}

function atLeast(v: ServerVersion, major: number, minor: number): boolean {
  return v.major > major || (v.major === major && v.minor >= minor);
}

export function featuresFor(version: ServerVersion): StoreFeatures {
  const modern = atLeast(version, 20, 3);
  return { ttl: modern, codecs: modern, lowCardinality: modern };
}

/** Binary output formats a store can render (`Store.queryBinary`). */
export type BinaryFormat = 'Parquet';

/**
 * The binary output formats of a server version. Parquet output arrived during 19.x; the same
 * conservative 20.3 line as the storage features (chDB and current servers have it; 18.16 does not).
 * Kept apart from StoreFeatures: those shape the schema, this only what a read may ask for.
 */
export function binaryFormatsFor(version: ServerVersion): BinaryFormat[] {
  return atLeast(version, 20, 3) ? ['Parquet'] : [];
}
