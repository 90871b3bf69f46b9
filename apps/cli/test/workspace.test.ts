import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
