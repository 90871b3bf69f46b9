import { existsSync, statSync } from 'node:fs';
import { CmError, errorMessage } from '@cm/core';
import { resolvePath, type CmConfig } from '@cm/config';
import { CLICKHOUSE_SERVICE, LOCAL_CLICKHOUSE_CLUSTER, clickHouseNodeService, stackStatus } from '@cm/stack';
import {
  describeTarget,
  findReaderEndpoint,
  openRemoteReadStore,
  openStore,
  storeTargetFromString,
  type Store,
} from '@cm/store';

/**
 * One notion of "the store" for every reading command (`cm runs`, `cm sql`, `cm ui`, `cm report`):
 *
 *  1. `--store DIR|URL` if given: a ClickHouse URL, or a chDB folder that must exist (a reading
 *     command never creates one: a typo is an error, not a new empty store);
 *  2. else the local stack's ClickHouse when `cm stack up` runs for this CM_HOME (its state folder
 *     records the clickhouse-server pid and health URL; it must be alive and answer /ping);
 *  3. else the embedded chDB folder (CM_CHDB_PATH).
 *
 * A chDB folder that another process holds for writing (`cm demo`, `cm train`) is read through that
 * process' reader endpoint (libs/store reader-endpoint), found by its `<folder>.reader.json`.
 */
export interface ReadStore {
  store: Store;
  /** One line for the user: which store was read, e.g. "chdb .cm/store (served by cm demo, pid 1234)". */
  description: string;
  /** Where the choice came from. */
  source: 'flag' | 'stack' | 'embedded';
}

export interface ReadStoreOptions {
  /** `--store`: a folder or an http(s):// URL. */
  store?: string;
  config: CmConfig;
}

/**
 * The stack's clickhouse-server when `cm stack up` runs it for this CM_HOME: its URL and pid. In a
 * cluster stack: node s1r1, its URL naming the cluster (reads go through the Distributed tables).
 */
export async function runningStackClickHouse(
  config: CmConfig,
): Promise<{ url: string; pid: number } | undefined> {
  const dir = resolvePath(config.stack.dir);
  if (!existsSync(dir)) return undefined;
  const services = await stackStatus(dir).catch(() => []);
  const clusterNode = clickHouseNodeService(0, 0);
  const ch = services.find((s) => s.name === CLICKHOUSE_SERVICE || s.name === clusterNode);
  if (!ch || !ch.running || !ch.healthy || ch.pid === undefined) return undefined;
  const url = ch.health.replace(/\/ping$/, '');
  return { url: ch.name === clusterNode ? `${url}/?cluster=${LOCAL_CLICKHOUSE_CLUSTER}` : url, pid: ch.pid };
}

/** A chDB folder for reading: through its writer's endpoint while one holds it, else opened directly. */
async function openChdbForReading(
  path: string,
  config: CmConfig,
): Promise<{ store: Store; description: string }> {
  const served = async (): Promise<{ store: Store; description: string } | undefined> => {
    const advert = findReaderEndpoint(path);
    if (!advert) return undefined;
    const store = await openRemoteReadStore(advert);
    return { store, description: `chdb ${path} (served by ${advert.writer}, pid ${advert.pid})` };
  };
  const viaWriter = await served();
  if (viaWriter) return viaWriter;
  const target = storeTargetFromString(path, config.clickhouse);
  try {
    return { store: await openStore(target), description: describeTarget(target) };
  } catch (e) {
    // a writer may have opened the folder between our look and our open: look once more
    const late = await served().catch(() => undefined);
    if (late) return late;
    if (e instanceof CmError && /lock/i.test(errorMessage(e)))
      throw new CmError('UNAVAILABLE', `${path} is held by another process, which serves no reads`, {
        context: { store: path },
        cause: e,
        hint: 'a writer started by an older cm holds it; read it after that run ends, or use the stack (`cm stack up`, `--stack`)',
      });
    throw e;
  }
}

function requireFolder(path: string, how: string): void {
  if (!existsSync(path))
    throw new CmError('NOT_FOUND', `no store at ${path} (${how})`, {
      context: { store: path },
      hint:
        how === '--store'
          ? 'check the path: a reading command does not create a store'
          : 'run `cm demo` or `cm train` first, or pass --store DIR|URL',
    });
  if (!statSync(path).isDirectory())
    throw new CmError('INVALID_ARGUMENT', `${path} is not a folder (${how})`, {
      context: { store: path },
      hint: 'a chDB store is a folder; a server is an http(s):// URL',
    });
}

export async function resolveReadStore(opts: ReadStoreOptions): Promise<ReadStore> {
  const { config } = opts;
  if (opts.store !== undefined) {
    const target = storeTargetFromString(opts.store, config.clickhouse);
    if (target.kind === 'server')
      return { store: await openStore(target), description: describeTarget(target), source: 'flag' };
    requireFolder(target.path, '--store');
    return { ...(await openChdbForReading(target.path, config)), source: 'flag' };
  }
  const stack = await runningStackClickHouse(config);
  if (stack) {
    const target = storeTargetFromString(stack.url, config.clickhouse);
    return {
      store: await openStore(target),
      description: `${describeTarget(target)} of \`cm stack up\` (clickhouse-server pid ${stack.pid})`,
      source: 'stack',
    };
  }
  const path = resolvePath(config.chdbPath);
  requireFolder(path, 'the embedded store, CM_CHDB_PATH');
  return { ...(await openChdbForReading(path, config)), source: 'embedded' };
}

/** The line every reading command prints on stderr. */
export function announceStore(read: Pick<ReadStore, 'description'>): void {
  process.stderr.write(`store: ${read.description}\n`);
}
