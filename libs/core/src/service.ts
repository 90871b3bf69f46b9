import { createServer } from 'node:http';
import { errorMessage } from './errors';
import type { Logger } from './log';

/**
 * The shell every long-running service shares: an HTTP health endpoint and the process life cycle
 * (start, stop cleanly on SIGTERM/SIGINT, exit non-zero when start fails).
 */
export interface HealthReport {
  ok: boolean;
  [detail: string]: unknown;
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

/** The body of GET /metrics (Prometheus text exposition; libs/metrics makes it). */
export type MetricsSource = () => Promise<{ contentType: string; body: string }>;

/**
 * `GET /healthz` answers 200 with the report while `check` says ok, else 503; `GET /metrics` the
 * service's Prometheus metrics when `metrics` is given; other paths 404.
 */
export async function startHealthServer(
  port: number,
  check: () => Promise<HealthReport> | HealthReport,
  host = '127.0.0.1',
  metrics?: MetricsSource,
): Promise<HealthServer> {
  const server = createServer((req, res) => {
    const path = req.url?.split('?')[0];
    if (path === '/metrics' && metrics) {
      metrics().then(
        (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
        (e: unknown) =>
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${errorMessage(e)}\n`),
      );
      return;
    }
    if (path !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    Promise.resolve()
      .then(check)
      .catch((e: unknown): HealthReport => ({ ok: false, error: errorMessage(e) }))
      .then((report) => {
        res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: report.ok ? 'ok' : 'unhealthy', ...report }));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * Run a service as the main program: start it, stop it once on SIGTERM or SIGINT (exit 0 when the
 * stop is clean, 1 otherwise), and exit 1 with one log line when it cannot start.
 */
export function runService(log: Logger, start: () => Promise<{ stop(): Promise<void> }>): void {
  start().then(
    (running) => {
      let stopping = false;
      const shutdown = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        log.info('stopping', { signal });
        running.stop().then(
          () => process.exit(0),
          (e: unknown) => {
            log.error(`unclean stop: ${errorMessage(e)}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    },
    (e: unknown) => {
      log.error(`failed to start: ${errorMessage(e)}`);
      process.exit(1);
    },
  );
}
