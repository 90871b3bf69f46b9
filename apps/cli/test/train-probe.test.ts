/**
 * Bring-your-own probe bundle with `cm train` (subprocess, fresh CM_HOME): a bundle folder outside
 * the bundle directory is monitored (it used to load, then train unmonitored and exit 0); monitoring
 * that cannot start fails the command unless --allow-unmonitored.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@cm/core';
import { makeSyntheticBundle, writeBundleInto } from '@cm/probe';
import { cmWith } from './run-cm';

const home = mkdtempSync(join(tmpdir(), 'cm-byo-'));
const cm = cmWith({ CM_HOME: join(home, 'home'), CM_LOG_LEVEL: 'warn', CM_DISSECT_WORKERS: '1' }, 180_000);
let folder: string;
let bundleId: string;

beforeAll(async () => {
  const written = await writeBundleInto(
    join(home, 'elsewhere'),
    makeSyntheticBundle({ images: 120, seed: 5 }),
  );
  folder = written.dir;
  bundleId = written.id;
}, 60_000);
afterAll(() => rmSync(home, { recursive: true, force: true }));

const tiny = ['--steps', '4', '--every', '2', '--count', '240', '--widths', '4,8', '--batch', '16'];

describe('cm train --probe <folder>', () => {
  it('monitors with a bundle folder outside the bundle directory', async () => {
    const r = await cm(['train', ...tiny, '--probe', folder, '--run-id', 'byo-folder']);
    expect(r.stderr).not.toMatch(/unmonitored|error/i);
    expect(r.code).toBe(0);
    expect(existsSync(join(home, 'home', 'bundles', bundleId, 'manifest.json'))).toBe(true);
    const runs = await cm(['runs', '--json']);
    const run = (JSON.parse(runs.stdout) as Record<string, unknown>[]).find((x) => x.run_id === 'byo-folder');
    expect(run).toMatchObject({ status: 'completed' });
    expect(Number(run?.last_step)).toBe(4);
    const labels = await cm([
      'sql',
      `SELECT (SELECT any(bundle_id) FROM runs WHERE run_id = 'byo-folder') AS bundle, count() AS n FROM neuron_labels WHERE run_id = 'byo-folder'`,
      '--format',
      'csv',
    ]);
    expect(labels.code).toBe(0);
    // checkpoints 0, 2 and 4 of conv1[4], conv2[8], logits[8]
    expect(labels.stdout).toContain(`"${bundleId}",60`);
  }, 200_000);

  it('monitoring that cannot start fails the command; --allow-unmonitored makes it a warning', async () => {
    const target = `127.0.0.1:${await freePort()}`;
    const args = ['train', ...tiny, '--steps', '2', '--stack', '--policy', 'wait', '--max-block-ms', '500'];
    const failed = await cm([...args, '--run-id', 'byo-down'], { CM_GRPC_TARGET: target });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(new RegExp(`run byo-down could not start.*${target} unreachable`));
    expect(failed.stderr).toMatch(/--allow-unmonitored/);
    const allowed = await cm([...args, '--run-id', 'byo-allowed', '--allow-unmonitored'], {
      CM_GRPC_TARGET: target,
    });
    expect(allowed.code).toBe(0);
    expect(allowed.stdout + allowed.stderr).toMatch(/training goes on unmonitored/);
  }, 200_000);
});
