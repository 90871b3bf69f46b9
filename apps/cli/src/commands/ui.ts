import type { Command } from 'commander';
import { CmError, createLogger, invalidArgument } from '@cm/core';
import { loadConfig, resolvePath, type CmConfig } from '@cm/config';
import { BundleDirectory } from '@cm/probe';
import type { Store } from '@cm/store';
import { startUiServer, type UiServer } from '@cm/ui';
import { resolveReadStore } from '../store-access';
import { openReadStoreFromFlags, type StoreFlags } from './sql';

const log = createLogger('cli.ui');

function parsePort(value: string | number): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw invalidArgument(
      `--port ${value} is not a port`,
      { port: value },
      'use 1..65535, or 0 for any free port',
    );
  return port;
}

/** The view of `store`, for `cm ui` and `cm demo` (which serves its own, embedded, store in-process). */
export async function serveView(
  store: Store,
  config: CmConfig,
  opts: { host?: string; port?: number; storeName?: string } = {},
): Promise<UiServer> {
  return startUiServer({
    store,
    bundles: new BundleDirectory(resolvePath(config.bundles.dir)),
    host: opts.host ?? config.ui.host,
    port: opts.port ?? config.ui.port,
    storeName: opts.storeName,
    log,
  });
}

/** true when the error says the port is taken (the demo then goes on without the view). */
export function isPortBusy(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === 'EADDRINUSE' || code === 'EACCES';
}

export function registerUi(program: Command): void {
  program
    .command('ui')
    .description(
      'serve a live web view of the store (runs, run overview, layer view, concept map, neuron view, compare) on http://127.0.0.1:6060',
    )
    .option(
      '--store <url|dir>',
      'http(s)://host:port[/?database=db] for a server, or a chDB data folder (default: the running stack, else CM_CHDB_PATH)',
    )
    .option('--server', 'read the server at CM_CLICKHOUSE_URL')
    .option('--port <port>', 'port to listen on (CM_UI_PORT; 0 = any free port)')
    .option('--host <host>', 'address to listen on (CM_UI_HOST)')
    .action(async (opts: StoreFlags & { port?: string; host?: string }) => {
      const config = loadConfig();
      const port = opts.port !== undefined ? parsePort(opts.port) : config.ui.port;
      const read = await openReadStoreFromFlags(opts);
      let server: UiServer;
      try {
        server = await serveView(read.store, config, { host: opts.host, port, storeName: read.description });
      } catch (e) {
        await read.store.close();
        if (isPortBusy(e))
          throw new CmError(
            'UNAVAILABLE',
            `cannot listen on ${opts.host ?? config.ui.host}:${port}: the port is in use`,
            {
              context: { port },
              cause: e,
              hint: 'is another `cm ui` or `cm demo` running? pick another with --port',
            },
          );
        throw e;
      }
      process.stdout.write(
        `Concept-Monitor view of ${read.description}\n  ${server.url}\n(Ctrl-C to stop)\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          resolve();
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
      await server.close();
      await read.store.close();
    });
}

/**
 * `cm demo`'s view: served in-process from the demo's own embedded store (chDB lets one process
 * open the folder), or from the stack's ClickHouse with `--stack`. A busy port or an unreachable
 * store is not an error for the demo: it says so and trains without the view.
 */
export async function startDemoView(
  handle: { mode: string; store?: Store },
  config: CmConfig,
  print: (line: string) => void,
): Promise<{ url: string; close(): Promise<void> } | undefined> {
  if (handle.mode === 'none') return undefined;
  let owned: Store | undefined;
  try {
    let store = handle.store;
    let storeName = `chdb ${resolvePath(config.chdbPath)} (written by this cm demo)`;
    if (!store) {
      const read = await resolveReadStore({ config });
      owned = store = read.store;
      storeName = read.description;
    }
    const server = await serveView(store, config, { storeName });
    print(`View: ${server.url}  (live while the demo trains; --no-ui to skip)`);
    return {
      url: server.url,
      close: async () => {
        await server.close();
        await owned?.close();
      },
    };
  } catch (e) {
    await owned?.close().catch(() => undefined);
    print(
      isPortBusy(e)
        ? `View: not started, ${config.ui.host}:${config.ui.port} is in use (CM_UI_PORT=... to pick another; npx cm ui after the demo)`
        : `View: not started (${e instanceof Error ? e.message : String(e)})`,
    );
    return undefined;
  }
}
