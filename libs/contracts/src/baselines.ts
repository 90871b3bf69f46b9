/**
 * Random-initialisation baselines of the learned-concept figure (docs/dissect.md, "Learned
 * concepts"), as they are kept outside a process: per architecture key (baselineKey of @cm/engine),
 * each random initialisation's dissected layers, and the complete baseline. The concept service's
 * replicas share them in the JetStream key-value bucket BASELINE_BUCKET (@cm/bus openBaselineKv);
 * all-in-one mode keeps them as files under <CM_HOME>/baselines (@cm/engine FileBaselineStore).
 * Both write one layer of one initialisation in the JSON form below.
 */
import { runStateKey } from './subjects';

/** One monitored layer of one random initialisation, dissected (RandomInitLayer of @cm/dissect). */
export interface BaselineLayer {
  /** Label (top-1 concept index) per neuron. */
  conceptIndex: ArrayLike<number>;
  /** Evidence for the label's concept per neuron (-Infinity for a dead neuron). */
  evidence: ArrayLike<number>;
  /** The association test's verdict per neuron. */
  interpretable: ArrayLike<boolean>;
  /** Per concept: the best evidence any live neuron of this initialisation reaches for it. */
  conceptCeiling: ArrayLike<number>;
}

/** A BaselineLayer as read back. */
export interface DecodedBaselineLayer extends BaselineLayer {
  conceptIndex: Int32Array;
  evidence: Float32Array;
  interpretable: boolean[];
  conceptCeiling: Float32Array;
}

/** The JSON form: each array as base64 of its little-endian bytes (int32, float32, uint8, float32). */
export interface BaselineLayerJson {
  conceptIndex: string;
  evidence: string;
  interpretable: string;
  conceptCeiling: string;
}

/**
 * The JetStream key-value bucket of the baselines, shared by every concept-service replica. Keys
 * (baselineInitKey, baselineCompleteKey) are written once: the first value written stays, so every
 * replica computes every run's learned figure against the same baseline.
 */
export const BASELINE_BUCKET = {
  name: 'CM_BASELINES_V1',
  history: 1,
} as const;

/** Bucket key of layer `layer` of random initialisation `index` (the layer name encoded as runStateKey encodes a run id). */
export function baselineInitKey(key: string, index: number, layer: string): string {
  return `${key}.init.${index}.${runStateKey(layer)}`;
}

/** Bucket key of the complete baseline's record (which inits, which layers). */
export function baselineCompleteKey(key: string): string {
  return `${key}.complete`;
}

const littleEndian = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function toBase64(a: Int32Array | Float32Array | Uint8Array): string {
  const bytes = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  return (littleEndian || a.BYTES_PER_ELEMENT === 1 ? bytes : Buffer.from(bytes).swap32()).toString('base64');
}

function fromBase64(text: unknown, width: 1 | 4, what: string): Buffer {
  if (typeof text !== 'string') throw new Error(`${what} is not a base64 string`);
  const bytes = Buffer.from(Buffer.from(text, 'base64')); // own, aligned copy
  if (bytes.length % width !== 0)
    throw new Error(`${what}: ${bytes.length} bytes is not a whole number of values`);
  if (width === 4 && !littleEndian) bytes.swap32();
  return bytes;
}

export function baselineLayerToJson(l: BaselineLayer): BaselineLayerJson {
  return {
    conceptIndex: toBase64(Int32Array.from(l.conceptIndex)),
    evidence: toBase64(Float32Array.from(l.evidence)),
    interpretable: toBase64(Uint8Array.from(Array.from(l.interpretable), (v) => (v ? 1 : 0))),
    conceptCeiling: toBase64(Float32Array.from(l.conceptCeiling)),
  };
}

/** Parse a layer's JSON form; throws an Error naming `where` and the field when it is malformed. */
export function baselineLayerFromJson(raw: unknown, where: string): DecodedBaselineLayer {
  if (!raw || typeof raw !== 'object') throw new Error(`${where}: not an object`);
  const r = raw as Record<string, unknown>;
  const i32 = (b: Buffer): Int32Array => new Int32Array(b.buffer, b.byteOffset, b.length / 4);
  const f32 = (b: Buffer): Float32Array => new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  const layer: DecodedBaselineLayer = {
    conceptIndex: i32(fromBase64(r.conceptIndex, 4, `${where} conceptIndex`)),
    evidence: f32(fromBase64(r.evidence, 4, `${where} evidence`)),
    interpretable: Array.from(fromBase64(r.interpretable, 1, `${where} interpretable`), Boolean),
    conceptCeiling: f32(fromBase64(r.conceptCeiling, 4, `${where} conceptCeiling`)),
  };
  const n = layer.conceptIndex.length;
  if (layer.evidence.length !== n || layer.interpretable.length !== n)
    throw new Error(
      `${where}: ${n} labels but ${layer.evidence.length} evidence values and ${layer.interpretable.length} verdicts`,
    );
  return layer;
}
