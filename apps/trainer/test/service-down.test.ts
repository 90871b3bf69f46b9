import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '@cm/core';

const ROOT = resolve(__dirname, '../../..');

/** The trainer process against a concept service that is not there: it must finish, not hang or crash. */
it('trains to the end with the concept service down (policy drop), within the policy bound', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-trainer-down-'));
  const port = await freePort();
  try {
    const t0 = Date.now();
    const out = spawnSync(
      process.execPath,
      [
        join(ROOT, 'node_modules/tsx/dist/cli.mjs'),
        join(ROOT, 'apps/trainer/src/main.ts'),
        ...[
          '--steps',
          '3',
          '--every',
          '1',
          '--count',
          '40',
          '--batch',
          '8',
          '--widths',
          '4,8',
          '--probe-images',
          '60',
        ],
        ...[
          '--target',
          `127.0.0.1:${port}`,
          '--policy',
          'drop',
          '--max-block-ms',
          '300',
          '--run-id',
          'down-1',
        ],
      ],
      {
        cwd: ROOT,
        env: { ...process.env, CM_HOME: dir, CM_BUNDLE_DIR: join(dir, 'bundles'), CM_LOG_LEVEL: 'warn' },
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/run down-1 \(standard\) completed: 3 steps/);
    expect(out.stdout).toMatch(/0 checkpoints monitored, 4 dropped/);
    expect(out.stderr).toMatch(/unreachable for 300 ms/);
    expect(Date.now() - t0).toBeLessThan(120_000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 150_000);

it('the default policy (spool) with the service down all run long: spooled under CM_HOME/spool, then counted as dropped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cm-trainer-down-'));
  const port = await freePort();
  try {
    const out = spawnSync(
      process.execPath,
      [
        join(ROOT, 'node_modules/tsx/dist/cli.mjs'),
        join(ROOT, 'apps/trainer/src/main.ts'),
        ...['--steps', '3', '--every', '1', '--count', '40', '--batch', '8', '--widths', '4,8'],
        ...['--probe-images', '60', '--target', `127.0.0.1:${port}`, '--max-block-ms', '300'],
        ...['--run-id', 'down-spool'],
      ],
      {
        cwd: ROOT,
        env: { ...process.env, CM_HOME: dir, CM_BUNDLE_DIR: join(dir, 'bundles'), CM_LOG_LEVEL: 'warn' },
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/run down-spool \(standard\) completed: 3 steps/);
    expect(out.stdout).toMatch(/0 checkpoints monitored, 4 dropped/);
    expect(out.stderr).toContain(`checkpoints are spooled to ${join(dir, 'spool', 'down-spool')}`);
    expect(out.stderr).toMatch(/at the end of the run: dropped 4 undelivered checkpoint/);
    // the run's spool folder is removed once given up on
    expect(existsSync(join(dir, 'spool', 'down-spool'))).toBe(false);
    expect(readdirSync(join(dir, 'spool'))).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 150_000);
