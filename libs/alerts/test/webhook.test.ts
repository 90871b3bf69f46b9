import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AlertRecord } from '@cm/contracts';
import { freePort } from '@cm/core';
import type { CmRecord } from '@cm/contracts';
import { WebhookNotifier, webhookFromConfig, withWebhook } from '../src';

const alert: AlertRecord = {
  kind: 'alert',
  alertId: 'r1/conv1/diversity_floor/300',
  runId: 'r1',
  layer: 'conv1',
  step: 300,
  rule: 'diversity_floor',
  state: 'firing',
  severity: 'critical',
  value: 0.02,
  threshold: 0.05,
  message: 'concept collapse',
  time: '2024-01-01T00:00:00.000Z',
};

interface Received {
  body: unknown;
  contentType?: string;
}

/** A real HTTP receiver on 127.0.0.1 answering with the scripted statuses in turn (200 after). */
async function receiver(
  statuses: (number | 'hang')[],
): Promise<{ url: string; received: Received[]; server: Server }> {
  const received: Received[] = [];
  const port = await freePort();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
        contentType: req.headers['content-type'],
      });
      const status = statuses.shift() ?? 200;
      if (status === 'hang') return; // never answer: the client must time out
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}/hook`, received, server };
}

const close = (s: Server): Promise<void> =>
  new Promise((r) => {
    s.closeAllConnections();
    s.close(() => r());
  });

describe('WebhookNotifier', () => {
  it('POSTs the alert as JSON', async () => {
    const { url, received, server } = await receiver([]);
    try {
      await new WebhookNotifier({ url }).notify(alert);
      expect(received).toEqual([{ body: alert, contentType: 'application/json' }]);
    } finally {
      await close(server);
    }
  });

  it('retries 503 and timeouts with backoff, then succeeds', async () => {
    const { url, received, server } = await receiver([503, 'hang', 200]);
    try {
      await new WebhookNotifier({ url, retries: 3, backoffMs: 10, timeoutMs: 300 }).notify(alert);
      expect(received).toHaveLength(3);
    } finally {
      await close(server);
    }
  });

  it('gives up after the retries with UNAVAILABLE, and does not retry a 400', async () => {
    const a = await receiver([500, 500, 500]);
    try {
      await expect(
        new WebhookNotifier({ url: a.url, retries: 2, backoffMs: 5 }).notify(alert),
      ).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: expect.stringContaining('failed after 3 attempts'),
      });
      expect(a.received).toHaveLength(3);
    } finally {
      await close(a.server);
    }
    const b = await receiver([400]);
    try {
      await expect(
        new WebhookNotifier({ url: b.url, retries: 3, backoffMs: 5 }).notify(alert),
      ).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      expect(b.received).toHaveLength(1);
    } finally {
      await close(b.server);
    }
  });

  it('reports a refused connection as UNAVAILABLE', async () => {
    const port = await freePort();
    await expect(
      new WebhookNotifier({ url: `http://127.0.0.1:${port}/`, retries: 1, backoffMs: 5 }).notify(alert),
    ).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('validates its url and builds from config only when one is set', () => {
    expect(() => new WebhookNotifier({ url: 'not a url' })).toThrow(/not a URL/);
    expect(() => new WebhookNotifier({ url: 'ftp://x/' })).toThrow(/must be http/);
    expect(webhookFromConfig({})).toBeUndefined();
    expect(webhookFromConfig({ webhookUrl: 'http://127.0.0.1:1/x' })?.url).toBe('http://127.0.0.1:1/x');
  });
});

describe('withWebhook', () => {
  it('stores first, then delivers only the alerts; a dead receiver is reported, not thrown', async () => {
    const stored: CmRecord[] = [];
    const inner = { write: async (r: CmRecord[]) => void stored.push(...r) };
    const checkpoint: CmRecord = { kind: 'checkpoint', runId: 'r1', step: 1, metrics: {}, time: alert.time };
    const { url, received, server } = await receiver([]);
    try {
      const deliveries: number[] = [];
      await withWebhook(inner, new WebhookNotifier({ url }), (d) =>
        deliveries.push(d.delivered.length),
      ).write([checkpoint, alert]);
      expect(stored).toEqual([checkpoint, alert]);
      expect(received.map((r) => r.body)).toEqual([alert]);
      expect(deliveries).toEqual([1]);
    } finally {
      await close(server);
    }
    const port = await freePort();
    const failed: string[] = [];
    await withWebhook(inner, new WebhookNotifier({ url: `http://127.0.0.1:${port}/`, retries: 0 }), (d) =>
      failed.push(...d.failed.map((f) => f.alert.alertId)),
    ).write([alert]);
    expect(failed).toEqual([alert.alertId]);
  });
});
