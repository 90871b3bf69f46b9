/**
 * What the baseline tests share: the test bundles, a folder for file stores (removed after the
 * tests), and engines with the inline dissector bound to a given BaselineStore.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConceptEngine, inlineDissector, type BaselineStore } from '../src';
import { useTestBundles, type TestBundles } from '../src/testing';

export interface BaselineTests {
  tb: TestBundles;
  dir: string;
  engineWith(baselines: BaselineStore): ConceptEngine;
}

export function useBaselineTests(dirPrefix: string): BaselineTests {
  const tb = useTestBundles();
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return {
    tb,
    dir,
    engineWith: (baselines) =>
      new ConceptEngine({ bundles: tb.bundles, dissector: inlineDissector(), baselines }),
  };
}
