import { freePort, startHealthServer } from '../src';

describe('startHealthServer', () => {
  it('answers 200 while healthy, 503 when not or when the check throws, 404 elsewhere', async () => {
    let state: 'ok' | 'down' | 'throw' = 'ok';
    const port = await freePort();
    const server = await startHealthServer(port, () => {
      if (state === 'throw') throw new Error('store unreachable');
      return { ok: state === 'ok', store: state };
    });
    const get = async (path = '/healthz'): Promise<[number, Record<string, unknown> | undefined]> => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return [res.status, res.status === 404 ? undefined : ((await res.json()) as Record<string, unknown>)];
    };
    try {
      expect(await get()).toEqual([200, { status: 'ok', ok: true, store: 'ok' }]);
      state = 'down';
      expect(await get()).toEqual([503, { status: 'unhealthy', ok: false, store: 'down' }]);
      state = 'throw';
      expect(await get()).toEqual([503, { status: 'unhealthy', ok: false, error: 'store unreachable' }]);
      expect((await get('/other'))[0]).toBe(404);
    } finally {
      await server.close();
    }
  });
});
