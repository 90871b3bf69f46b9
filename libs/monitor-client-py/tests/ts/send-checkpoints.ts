/**
 * The TypeScript half of tests/test_parity.py: sends the checkpoints stored as .npy files in a
 * folder through libs/monitor-client, exactly as the Python test sends them through
 * concept_monitor, so the two runs' label rows can be compared.
 *
 *   node --import tsx send-checkpoints.ts TARGET BUNDLE_ID RUN_ID DIR float32|float16
 *
 * DIR holds layers.json ([{ name, kind, pooling }]) and step<S>-<layer>.npy (float32) per step.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readNpy } from '@cm/core';
import type { LayerActivations } from '@cm/contracts';
import { createMonitorClient } from '@cm/monitor-client';

interface LayerDecl {
  name: string;
  kind: 'conv' | 'dense';
  pooling: 'avg' | 'max';
}

async function main(): Promise<void> {
  const [target, bundleId, runId, dir, dtype] = process.argv.slice(2);
  if (!dir || (dtype !== 'float32' && dtype !== 'float16'))
    throw new Error('usage: send-checkpoints.ts TARGET BUNDLE_ID RUN_ID DIR float32|float16');
  const layers = JSON.parse(readFileSync(join(dir, 'layers.json'), 'utf8')) as LayerDecl[];
  const steps = [
    ...new Set(
      readdirSync(dir)
        .map((f) => /^step(\d+)-/.exec(f)?.[1])
        .filter((s): s is string => s !== undefined)
        .map(Number),
    ),
  ].sort((a, b) => a - b);
  const load = (step: number, l: LayerDecl): LayerActivations => {
    const arr = readNpy(join(dir, `step${step}-${l.name}.npy`));
    return { layer: l.name, shape: arr.shape, data: arr.data as Float32Array, pooling: l.pooling };
  };
  const first = steps.map((s) => layers.map((l) => load(s, l)))[0];
  const client = createMonitorClient({ target, dtype });
  try {
    await client.startRun({
      runId,
      model: 'parity',
      paradigm: 'standard',
      bundleId,
      layers: layers.map((l, i) => ({
        name: l.name,
        width: first[i].shape[first[i].shape.length - 1],
        kind: l.kind,
      })),
      tags: {},
    });
    for (const step of steps)
      await client.sendCheckpoint({
        step,
        layers: layers.map((l) => load(step, l)),
        metrics: { loss: 1 / (step + 1) },
      });
    await client.endRun('completed');
  } finally {
    await client.close();
  }
  process.stdout.write(`sent ${steps.length} checkpoints\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
