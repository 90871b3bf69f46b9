import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { CmError, createLogger, type Logger } from '@cm/core';
import type { BundleDirectory } from '@cm/probe';
import { describeTarget, type Store } from '@cm/store';
import type { ApiError } from './api-types';
import { bundleThumbnail, type ThumbnailSize } from './images';
import { createChangeFeed } from './live';
import { errorPage, shellPage } from './pages';
import {
  compareView,
  layerExists,
  layerView,
  mapView,
  missing,
  neuronExists,
  neuronView,
  overviewView,
  runExists,
  switchingView,
  runsView,
  type ViewContext,
} from './views';
import { webBundle } from './web-bundle';

export interface UiServerOptions {
  /** Read with SELECTs only (query); the server never writes or closes it. */
  store: Store;
  /** Where the runs' probe bundles are (for the concept names and the probe images). */
  bundles: BundleDirectory;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  log?: Logger;
  /** How the page names the store (default: describeTarget of the store's target). */
  storeName?: string;
  /** How often the live channel asks the store what changed (ms). */
  pollMs?: number;
}

export interface UiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

type Params = Record<string, string>;
type Query = Record<string, string | undefined>;

/** A path segment that must be a non-negative integer (neuron, step); anything else is unknown. */
function integerParam(kind: string, value: string | undefined): number {
  if (value === undefined || !/^\d{1,9}$/.test(value)) throw missing(kind, value ?? '');
  return Number(value);
}

function optionalInteger(kind: string, value: string | undefined): number | undefined {
  return value === undefined || value === '' ? undefined : integerParam(kind, value);
}

function integerList(kind: string, value: string | undefined): number[] {
  if (!value) return [];
  return value
    .split(',')
    .filter(Boolean)
    .map((v) => integerParam(kind, v));
}

function statusOf(e: unknown): { status: number; body: ApiError } {
  if (e instanceof CmError) {
    const m = e.context.missing as { kind: string; value: string } | undefined;
    switch (e.code) {
      case 'NOT_FOUND':
        return { status: 404, body: { error: e.message, missing: m, hint: e.hint } };
      case 'INVALID_ARGUMENT':
        return { status: 400, body: { error: e.message, hint: e.hint } };
      case 'UNAVAILABLE':
      case 'TIMEOUT':
        return {
          status: 503,
          body: { error: `the store cannot be reached: ${e.message}`, hint: e.hint, unavailable: true },
        };
      default:
        return { status: 500, body: { error: e.message, hint: e.hint } };
    }
  }
  return { status: 500, body: { error: e instanceof Error ? e.message : String(e) } };
}

/**
 * `cm ui`'s server: the page (bundled once from libs/ui/web), a JSON API per view, probe image
 * thumbnails by bundle id and a server-sent-events channel that tells open pages when the store
 * changed. Read-only: it only SELECTs. Page URLs are real paths, so a link to a run, layer or
 * neuron can be shared; an unknown one answers 404 with a page naming it.
 */
export async function startUiServer(opts: UiServerOptions): Promise<UiServer> {
  const log = opts.log ?? createLogger('ui');
  const ctx: ViewContext = { store: opts.store, bundles: opts.bundles };
  const storeName = opts.storeName ?? describeTarget(opts.store.target);
  const assets = await webBundle();
  const feed = createChangeFeed(opts.store, opts.pollMs ?? 500);
  const app = Fastify({ logger: false, routerOptions: { maxParamLength: 2000, ignoreTrailingSlash: true } });
  const streams = new Set<NodeJS.WritableStream & { end(): void }>();

  const api =
    <T>(handler: (p: Params, q: Query) => Promise<T>) =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      try {
        const body = await handler(req.params as Params, req.query as Query);
        void reply.header('cache-control', 'no-store').send(body);
      } catch (e) {
        const { status, body } = statusOf(e);
        // 503 (store down) repeats while the page retries: debug; anything else is a defect to see
        if (status === 503) log.debug('ui api: store unreachable', { url: req.url, error: body.error });
        else if (status >= 500) log.warn('ui api error', { url: req.url, error: body.error });
        void reply.code(status).header('cache-control', 'no-store').send(body);
      }
    };

  app.get('/assets/app.js', async (_req, reply) =>
    reply.type('application/javascript; charset=utf-8').send(assets.js),
  );
  app.get('/assets/app.css', async (_req, reply) => reply.type('text/css; charset=utf-8').send(assets.css));
  app.get('/favicon.ico', async (_req, reply) => reply.code(204).send());

  app.get(
    '/api/status',
    api(async () => ({ store: storeName, serverVersion: opts.store.serverVersion })),
  );
  app.get(
    '/api/runs',
    api(async () => runsView(ctx, storeName)),
  );
  app.get(
    '/api/runs/:run',
    api(async (p) => overviewView(ctx, p.run)),
  );
  app.get(
    '/api/runs/:run/layers/:layer',
    api(async (p) => layerView(ctx, p.run, p.layer)),
  );
  app.get(
    '/api/runs/:run/layers/:layer/switching',
    api(async (p) => switchingView(ctx, p.run, p.layer)),
  );
  app.get(
    '/api/runs/:run/layers/:layer/map',
    api(async (p, q) =>
      mapView(ctx, p.run, p.layer, {
        step: optionalInteger('step', q.step),
        trail: integerList('neuron', q.trail),
        overlay: q.overlay || undefined,
      }),
    ),
  );
  app.get(
    '/api/runs/:run/layers/:layer/neurons/:neuron',
    api(async (p) => neuronView(ctx, p.run, p.layer, integerParam('neuron', p.neuron))),
  );
  app.get(
    '/api/compare/:a/:b',
    api(async (p, q) => compareView(ctx, p.a, p.b, q.layer || undefined)),
  );
  app.get('/api/bundles/:bundleId/images/:index', async (req, reply) => {
    const p = req.params as Params;
    const q = req.query as Query;
    try {
      const png = await bundleThumbnail(
        opts.bundles,
        p.bundleId,
        integerParam('image', p.index),
        (optionalInteger('size', q.size) ?? 96) as ThumbnailSize,
      );
      return reply.type('image/png').header('cache-control', 'public, max-age=86400, immutable').send(png);
    } catch (e) {
      const { status, body } = statusOf(e);
      return reply.code(status).send(body);
    }
  });
  app.get('/api/events', (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write('retry: 1000\n\n');
    streams.add(res);
    const unsubscribe = feed.subscribe((event) => {
      res.write(`event: ${event.kind}\ndata: ${JSON.stringify(event)}\n\n`);
    });
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    heartbeat.unref();
    req.raw.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
      streams.delete(res);
    });
  });
  app.get('/api/*', async (req, reply) =>
    reply.code(404).send({ error: `no API route ${req.url}`, missing: { kind: 'route', value: req.url } }),
  );

  /** The page routes: check that what the URL names exists (404 page naming it), then the shell. */
  const page =
    (check: (p: Params, q: Query) => Promise<unknown>) =>
    async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      try {
        await check(req.params as Params, req.query as Query);
      } catch (e) {
        const { status, body } = statusOf(e);
        // store unreachable: the shell, whose page says so and retries
        if (status !== 503) {
          void reply.code(status).type('text/html; charset=utf-8').send(errorPage(status, body));
          return;
        }
      }
      void reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(shellPage());
    };
  const none = async (): Promise<void> => undefined;
  app.get('/', page(none));
  app.get(
    '/runs/:run',
    page((p) => runExists(ctx, p.run)),
  );
  app.get(
    '/runs/:run/layers/:layer',
    page((p) => layerExists(ctx, p.run, p.layer)),
  );
  app.get(
    '/runs/:run/layers/:layer/map',
    page((p) => layerExists(ctx, p.run, p.layer)),
  );
  app.get(
    '/runs/:run/layers/:layer/neurons/:neuron',
    page((p) => neuronExists(ctx, p.run, p.layer, integerParam('neuron', p.neuron))),
  );
  app.get(
    '/compare/:a/:b',
    page(async (p) => Promise.all([runExists(ctx, p.a), runExists(ctx, p.b)])),
  );
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .type('text/html; charset=utf-8')
      .send(errorPage(404, { error: `no page at ${req.url}`, missing: { kind: 'page', value: req.url } }));
  });

  const address = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 0 });
  const port = Number(new URL(address).port);
  const host = opts.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  log.debug('ui listening', { url, store: storeName });
  return {
    url,
    port,
    async close() {
      feed.close();
      for (const s of streams) s.end();
      streams.clear();
      await app.close();
    },
  };
}
