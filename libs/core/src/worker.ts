import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker thread on a TypeScript file. The project runs its sources through tsx (no build
 * step), and a worker thread starts as plain Node, so the worker first registers tsx's CommonJS
 * hook and then requires the file. Works the same under jest, the CLI and the services.
 */
export function startTsWorker(file: string, options: Omit<WorkerOptions, 'eval'> = {}): Worker {
  const code = `require('tsx/cjs'); require(${JSON.stringify(file)});`;
  return new Worker(code, { ...options, eval: true });
}
