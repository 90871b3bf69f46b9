/**
 * What the bench scripts read from their command line (`--name value`) and print alongside their
 * figures. A value that is missing or not a number stops the bench with a clear error instead of
 * running it on NaN.
 */
import { loadavg } from 'node:os';
import { CmError } from '@cm/core';

/** The text after `--name`, or fallback when `--name` is not given. */
export function argText(name: string, fallback: string, argv: string[] = process.argv): string {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = argv[i + 1];
  if (value === undefined || value.startsWith('--'))
    throw new CmError('INVALID_ARGUMENT', `--${name} needs a value`, { hint: `e.g. --${name} ${fallback}` });
  return value;
}

/** The number after `--name`, or fallback when `--name` is not given. */
export function arg(name: string, fallback: number, argv: string[] = process.argv): number {
  const text = argText(name, String(fallback), argv);
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value))
    throw new CmError('INVALID_ARGUMENT', `--${name} must be a number, got ${JSON.stringify(text)}`, {
      hint: `e.g. --${name} ${fallback}`,
    });
  return value;
}

/** The 1, 5 and 15 minute load averages, as the benches print them next to timings. */
export const loadText = (digits = 2): string =>
  loadavg()
    .map((l) => l.toFixed(digits))
    .join(' ');

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
