import { CmError, invalidArgument } from '@cm/core';
import type { AlertRecord } from '@cm/contracts';

export interface WebhookOptions {
  url: string;
  /** Attempts after the first one (0 = try once). */
  retries?: number;
  /** Wait before the first retry; doubles on each further retry. */
  backoffMs?: number;
  /** Per-request timeout. */
  timeoutMs?: number;
  /** Extra headers (for example an Authorization token of the receiving service). */
  headers?: Record<string, string>;
}

/** Status codes worth another try: the receiver is overloaded or briefly broken. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Delivers alerts as a JSON POST (the AlertRecord itself is the body). Retries network errors,
 * timeouts and 408/429/5xx with exponential backoff; other 4xx answers are the receiver rejecting
 * the payload and are not retried. Uses Node's built-in fetch: one POST needs no client library.
 */
export class WebhookNotifier {
  readonly url: string;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;
  private readonly headers: Record<string, string>;

  constructor(options: WebhookOptions) {
    let parsed: URL;
    try {
      parsed = new URL(options.url);
    } catch {
      throw invalidArgument(
        `webhook url is not a URL: ${options.url}`,
        { url: options.url },
        'set CM_ALERT_WEBHOOK_URL to http(s)://...',
      );
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw invalidArgument(`webhook url must be http(s), got ${parsed.protocol}`, { url: options.url });
    }
    this.url = options.url;
    this.retries = options.retries ?? 3;
    this.backoffMs = options.backoffMs ?? 500;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.headers = options.headers ?? {};
    if (!Number.isInteger(this.retries) || this.retries < 0)
      throw invalidArgument(`webhook retries must be >= 0, got ${this.retries}`);
    if (!(this.backoffMs >= 0) || !(this.timeoutMs > 0)) {
      throw invalidArgument('webhook backoffMs must be >= 0 and timeoutMs > 0', {
        backoffMs: this.backoffMs,
        timeoutMs: this.timeoutMs,
      });
    }
  }

  /** Resolves once the receiver answered 2xx; throws CmError('UNAVAILABLE') when every attempt failed. */
  async notify(alert: AlertRecord): Promise<void> {
    const body = JSON.stringify(alert);
    const failures: string[] = [];
    for (let attempt = 0; attempt <= this.retries; attempt++) {
      if (attempt > 0) await sleep(this.backoffMs * 2 ** (attempt - 1));
      let status: number;
      try {
        const res = await fetch(this.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'concept-monitor-alerts',
            ...this.headers,
          },
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        status = res.status;
        // Drain the body so the connection can be reused.
        await res.arrayBuffer().catch(() => undefined);
      } catch (e) {
        const cause =
          e instanceof Error
            ? e.name === 'TimeoutError'
              ? `timeout after ${this.timeoutMs} ms`
              : e.message
            : String(e);
        failures.push(cause);
        continue;
      }
      if (status >= 200 && status < 300) return;
      failures.push(`HTTP ${status}`);
      if (!RETRYABLE.has(status)) {
        throw new CmError(
          'INVALID_ARGUMENT',
          `webhook ${this.url} rejected alert ${alert.alertId}: HTTP ${status}`,
          {
            context: { url: this.url, alertId: alert.alertId, status },
            hint: 'check what the receiver expects; the alert is the JSON body',
          },
        );
      }
    }
    throw new CmError(
      'UNAVAILABLE',
      `webhook ${this.url} failed after ${failures.length} attempts: ${failures.join('; ')}`,
      {
        context: { url: this.url, alertId: alert.alertId, failures },
        hint: 'is the receiver up? retries and backoff: CM_ALERT_WEBHOOK_RETRIES, CM_ALERT_WEBHOOK_BACKOFF_MS',
      },
    );
  }
}

/** A notifier from `config.alerts`, or undefined when no webhook is configured. */
export function webhookFromConfig(alerts: {
  webhookUrl?: string;
  webhookRetries?: number;
  webhookBackoffMs?: number;
  webhookTimeoutMs?: number;
}): WebhookNotifier | undefined {
  if (!alerts.webhookUrl) return undefined;
  return new WebhookNotifier({
    url: alerts.webhookUrl,
    retries: alerts.webhookRetries,
    backoffMs: alerts.webhookBackoffMs,
    timeoutMs: alerts.webhookTimeoutMs,
  });
}
