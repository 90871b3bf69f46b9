import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const CM = join(__dirname, '..', 'bin', 'cm.js');
const run = promisify(execFile);

export interface CmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `cm` as a user runs it: a subprocess of this Node with the given environment on top of the
 * test's. Never throws for a non-zero exit: the exit code and both streams come back.
 */
export function cmWith(base: NodeJS.ProcessEnv = {}, timeoutMs = 120_000) {
  return async (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CmResult> => {
    try {
      const { stdout, stderr } = await run(process.execPath, [CM, ...args], {
        env: { ...process.env, ...base, ...env },
        timeout: timeoutMs,
      });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };
}

/** A fresh folder for the test file (its CM_HOME, or one above it), removed after its tests. */
export function testFolder(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `cm train` flags of a tiny run: 240 images, widths 4,8, batch 16, 120 probe images. */
export const tinyTrainFlags = (steps: number, every: number): string[] => [
  '--steps',
  String(steps),
  '--every',
  String(every),
  '--count',
  '240',
  '--widths',
  '4,8',
  '--batch',
  '16',
  '--probe-images',
  '120',
];
