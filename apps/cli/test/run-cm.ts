import { execFile } from 'node:child_process';
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
