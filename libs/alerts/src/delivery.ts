import type { AlertRecord, CmRecord } from '@cm/contracts';
import { createLogger, errorMessage } from '@cm/core';
import type { WebhookNotifier } from './webhook';

/** Anything records are written to (the engine's RecordSink has this shape). */
export interface RecordWriter {
  write(records: CmRecord[]): Promise<void>;
}

export interface AlertDelivery {
  /** Alerts the receiver acknowledged. */
  delivered: AlertRecord[];
  /** Alerts every attempt failed for, with the reason. */
  failed: { alert: AlertRecord; error: string }[];
}

const log = createLogger('alerts.webhook');

/**
 * POST every alert record in `records` to the webhook, one after another (so a receiver sees an
 * episode's firing before its resolution). A delivery failure is reported, never thrown: the
 * alert is already durable in the store/stream, and training must not stall on a chat relay.
 */
export async function deliverAlerts(
  notifier: WebhookNotifier,
  records: readonly CmRecord[],
): Promise<AlertDelivery> {
  const out: AlertDelivery = { delivered: [], failed: [] };
  for (const r of records) {
    if (r.kind !== 'alert') continue;
    try {
      await notifier.notify(r);
      out.delivered.push(r);
    } catch (e) {
      const error = errorMessage(e);
      log.warn(`alert ${r.alertId} not delivered to ${notifier.url}: ${error}`, {
        alertId: r.alertId,
        runId: r.runId,
      });
      out.failed.push({ alert: r, error });
    }
  }
  return out;
}

/**
 * A writer that stores records first and then hands the alerts among them to the webhook: what a
 * concept service or all-in-one monitor wraps around its sink when CM_ALERT_WEBHOOK_URL is set.
 */
export function withWebhook(
  inner: RecordWriter,
  notifier: WebhookNotifier,
  onDelivery?: (d: AlertDelivery) => void,
): RecordWriter {
  return {
    async write(records: CmRecord[]): Promise<void> {
      await inner.write(records);
      if (!records.some((r) => r.kind === 'alert')) return;
      const delivery = await deliverAlerts(notifier, records);
      onDelivery?.(delivery);
    },
  };
}
