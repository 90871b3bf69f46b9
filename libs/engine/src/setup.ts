import { createHash } from 'node:crypto';
import type { RunSetup } from '@cm/contracts';
import { resolveParams, type DissectOptions } from '@cm/dissect';
import type { EngineBundle } from './engine';

/** Concept-Monitor's version, recorded with each run (the workspace's package version). */
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const CODE_VERSION: string = (require('../../../package.json') as { version: string }).version;

/** sha256 of a bundle's concept set: names and categories, in order. */
export function conceptSetHash(space: EngineBundle['space']): string {
  const h = createHash('sha256');
  space.concepts.forEach((c, i) => h.update(`${c}\t${space.categories[i]}\n`));
  return h.digest('hex');
}

/** The setup a run's scores come from: what the engine will dissect it with, and the bundle. */
export function runSetup(
  opts: Omit<DissectOptions, 'previousTop1'> | undefined,
  bundle: EngineBundle,
): RunSetup {
  const r = resolveParams(opts?.method ?? 'soft_wpmi', opts?.params);
  const source = bundle.manifest?.source;
  const calibration =
    opts?.threshold !== undefined
      ? `fixed threshold ${opts.threshold}`
      : r.method === 'soft_wpmi' || r.method === 'wpmi'
        ? `per-concept likelihood null${opts?.nullActivations ? ' (supplied null neurons)' : ' (i.i.d. null neurons)'}`
        : `99% quantile of null top scores${opts?.nullActivations ? ' (supplied null neurons)' : ''}`;
  return {
    method: r.method,
    params: JSON.stringify(r.params),
    pooling: 'as sent: [D, N], or [D, H, W, C] pooled by the service (avg unless the chunk says max)',
    calibration,
    conceptSetHash: conceptSetHash(bundle.space),
    clipModel: source?.kind === 'clip' ? (source.model ?? '') : '',
    codeVersion: CODE_VERSION,
  };
}
