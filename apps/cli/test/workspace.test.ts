import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import madge from 'madge';

const ROOT = join(__dirname, '..', '..', '..');

interface NxGraph {
  graph: {
    nodes: Record<string, { type: string; data: { root: string } }>;
    dependencies: Record<string, { target: string }[]>;
  };
}

/** The architecture rule, checked on Nx's own project graph: apps depend on libs, never libs on apps. */
describe('workspace project graph', () => {
  let graph: NxGraph['graph'];
  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-graph-'));
    const file = join(dir, 'graph.json');
    execFileSync(process.execPath, [require.resolve('nx/bin/nx'), 'graph', `--file=${file}`], {
      cwd: ROOT,
      env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true' },
      stdio: 'ignore',
    });
    graph = (JSON.parse(readFileSync(file, 'utf8')) as NxGraph).graph;
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('knows the apps and libs by their folders', () => {
    const roots = Object.values(graph.nodes).map((n) => n.data.root);
    expect(roots).toEqual(expect.arrayContaining(['apps/cli', 'libs/dissect', 'libs/store', 'libs/core']));
    for (const n of Object.values(graph.nodes)) {
      expect(n.type).toBe(n.data.root.startsWith('apps/') ? 'app' : 'lib');
    }
  });

  it('has apps depending on libs and no lib depending on an app', () => {
    const isApp = (name: string): boolean => graph.nodes[name]?.data.root.startsWith('apps/') ?? false;
    const appToLib = Object.entries(graph.dependencies).filter(
      ([src, deps]) => isApp(src) && deps.some((d) => !isApp(d.target)),
    );
    expect(appToLib.length).toBeGreaterThan(0);
    const libToApp = Object.entries(graph.dependencies).flatMap(([src, deps]) =>
      isApp(src) ? [] : deps.filter((d) => isApp(d.target)).map((d) => `${src} -> ${d.target}`),
    );
    expect(libToApp).toEqual([]);
  });
});

/**
 * The module graph, file by file (madge over the TypeScript sources, type-only imports skipped):
 * no import circle inside or across libs, and neither a lib nor tools/ importing an app's module.
 */
describe('workspace module graph', () => {
  const options = {
    fileExtensions: ['ts'],
    excludeRegExp: [/node_modules/, /\.d\.ts$/],
    detectiveOptions: { ts: { skipTypeImports: true } },
  };

  it('finds a circle when there is one (the check can fail)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-circle-'));
    try {
      writeFileSync(join(dir, 'a.ts'), "import { b } from './b';\nexport const a = () => b();\n");
      writeFileSync(join(dir, 'b.ts'), "import { a } from './a';\nexport const b = () => a();\n");
      expect((await madge(dir, options)).circular()).toEqual([['a.ts', 'b.ts']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has no import circle in the libs', async () => {
    const graph = await madge(join(ROOT, 'libs'), options);
    expect(graph.circular()).toEqual([]);
  }, 120_000);

  it('has no lib and no tool importing an app', async () => {
    const offenders: string[] = [];
    for (const dir of ['libs', 'tools']) {
      const graph = (await madge(join(ROOT, dir), options)).obj();
      for (const [file, deps] of Object.entries(graph))
        for (const d of deps) if (/(^|\/)apps\//.test(d)) offenders.push(`${dir}/${file} -> ${d}`);
    }
    expect(offenders).toEqual([]);
  }, 120_000);
});

/**
 * The two ends of the wire share @cm/protocol and nothing else: no module of the SDK
 * (libs/monitor-client/src) reaches one of the concept server (libs/concept-server/src), or the
 * other way round, directly or through other libs, type-only imports included. (Their tests may
 * drive one with the other: that is what an integration test is.)
 */
describe('wire ends (issue 14)', () => {
  const options = {
    fileExtensions: ['ts'],
    excludeRegExp: [/node_modules/, /\.d\.ts$/, /\/test\//],
    detectiveOptions: { ts: { skipTypeImports: false } },
  };
  /** Files under `to` reachable from a file under `from` ("a -> ... -> b"). */
  function reaches(graph: Record<string, string[]>, from: string, to: string): string[] {
    const found: string[] = [];
    for (const start of Object.keys(graph).filter((f) => f.startsWith(from))) {
      const seen = new Set<string>([start]);
      const queue: string[][] = [[start]];
      while (queue.length) {
        const path = queue.shift()!;
        for (const d of graph[path[path.length - 1]] ?? []) {
          if (seen.has(d)) continue;
          seen.add(d);
          if (d.startsWith(to)) found.push([...path, d].join(' -> '));
          else queue.push([...path, d]);
        }
      }
    }
    return found;
  }

  it('finds a crossing when there is one (the check can fail)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cm-ends-'));
    try {
      for (const d of ['concept-server/src', 'monitor-client/src', 'engine/src'])
        mkdirSync(join(dir, d), { recursive: true });
      writeFileSync(join(dir, 'monitor-client/src/wire.ts'), 'export const w = 1;\n');
      writeFileSync(join(dir, 'engine/src/index.ts'), "export { w } from '../../monitor-client/src/wire';\n");
      writeFileSync(
        join(dir, 'concept-server/src/session.ts'),
        "export { w } from '../../engine/src/index';\n",
      );
      const graph = (await madge(dir, options)).obj();
      expect(reaches(graph, 'concept-server/src/', 'monitor-client/')).toEqual([
        'concept-server/src/session.ts -> engine/src/index.ts -> monitor-client/src/wire.ts',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the concept server and the SDK apart, both on @cm/protocol', async () => {
    const graph = (await madge(join(ROOT, 'libs'), options)).obj();
    expect(reaches(graph, 'concept-server/src/', 'monitor-client/')).toEqual([]);
    expect(reaches(graph, 'monitor-client/src/', 'concept-server/')).toEqual([]);
    expect(graph['concept-server/src/session.ts']).toContain('protocol/src/index.ts');
    expect(graph['monitor-client/src/client.ts']).toContain('protocol/src/index.ts');
  }, 120_000);
});
