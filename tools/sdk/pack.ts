/**
 * Pack the TypeScript SDK as a package a user's project installs: `npm run pack:sdk [-- --out DIR]`
 * prints the path of `concept-monitor-<version>.tgz`.
 *
 * The @cm/* packages are private workspace packages that exist only inside this repository, so
 * the SDK bundles their code (esbuild, CommonJS for Node 20) into dist/, with:
 *  - @tensorflow/tfjs as a peer dependency (the user's program has its own tfjs, and watch() must
 *    see the same tf instance as the user's model);
 *  - the native or large packages (chdb, onnxruntime-node for the dissection workers, @grpc/grpc-js,
 *    @grpc/proto-loader, @clickhouse/client, wabt, zod) as dependencies, at the versions this
 *    repository pins;
 *  - CLIP bundle building (sharp, transformers) left out: it is `cm probe build`'s, and the SDK only
 *    reads bundles;
 *  - the files the code finds next to itself at run time (the gRPC contract, the dissection worker
 *    and its WebAssembly kernel) copied into the package;
 *  - type declarations emitted by tsc from the sources, the @cm/* imports rewritten to relative paths.
 */
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';

const ROOT = resolve(__dirname, '..', '..');
const NAME = 'concept-monitor';
const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  license: string;
  dependencies: Record<string, string>;
};
const DEPENDENCIES = [
  'chdb',
  'onnxruntime-node',
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  '@clickhouse/client',
  'wabt',
  'zod',
];
const PEERS = ['@tensorflow/tfjs'];
/** Imported by modules the SDK bundles but never runs (CLIP bundle building, PNG previews). */
const LEFT_OUT = ['sharp', '@huggingface/transformers'];

/** Source rewrites for files that locate things relative to their own folder. */
const REWRITES: { file: string; from: string; to: string }[] = [
  {
    file: 'libs/protocol/src/proto.ts',
    from: "resolve(__dirname, '../../../protos')",
    to: "resolve(__dirname, 'protos')",
  },
  {
    file: 'libs/dissect/src/worker-pool.ts',
    from: "startTsWorker(join(__dirname, 'worker.ts'))",
    to: "new (require('node:worker_threads').Worker)(join(__dirname, 'dissect-worker.js'))",
  },
];

const sdkPlugin: Plugin = {
  name: 'concept-monitor-sdk',
  setup(b) {
    const leftOut = new RegExp(`^(${LEFT_OUT.map((n) => n.replace(/[/.]/g, '\\$&')).join('|')})(/.*)?$`);
    b.onResolve({ filter: leftOut }, (args) => ({ path: args.path, namespace: 'left-out' }));
    b.onLoad({ filter: /.*/, namespace: 'left-out' }, (args) => ({
      contents: `const fail = () => { throw new Error(${JSON.stringify(`${args.path} is not part of the concept-monitor SDK (build CLIP bundles with \`cm probe build\`)`)}); };
module.exports = new Proxy(fail, { get: (_t, k) => (k === '__esModule' ? false : fail()), apply: fail });`,
      loader: 'js',
    }));
    for (const r of REWRITES) {
      const abs = join(ROOT, r.file);
      b.onLoad({ filter: new RegExp(`${abs.replace(/[/.]/g, '\\$&')}$`) }, () => {
        const text = readFileSync(abs, 'utf8');
        if (!text.includes(r.from))
          throw new Error(`pack: ${r.file} no longer contains ${r.from}; update tools/sdk/pack.ts`);
        return { contents: text.replace(r.from, r.to), loader: 'ts' };
      });
    }
  },
};

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

/** tsc declarations of the SDK entry and everything it imports, @cm/* rewritten to relative paths. */
function emitTypes(pkgDir: string): string {
  const typesDir = join(pkgDir, 'dist', 'types');
  const tsconfig = join(pkgDir, 'tsconfig.types.json');
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(ROOT, 'tsconfig.base.json'),
      compilerOptions: {
        declaration: true,
        emitDeclarationOnly: true,
        noEmit: false,
        sourceMap: false,
        isolatedModules: false,
        rootDir: join(ROOT, 'libs'),
        outDir: typesDir,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
        // Resolved through node_modules the workspace packages would count as external libraries,
        // whose declarations tsc does not emit.
        baseUrl: ROOT,
        paths: { '@cm/*': ['libs/*/src/index.ts'] },
      },
      files: [
        join(ROOT, 'libs/watch/src/index.ts'),
        // ambient declarations the workspace's tsconfig picks up by its include globs
        join(ROOT, 'libs/store/src/chdb-connection.d.ts'),
        join(ROOT, 'libs/dissect/src/webassembly.d.ts'),
      ],
    }),
  );
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', tsconfig], {
    stdio: 'inherit',
  });
  rmSync(tsconfig);
  for (const file of walk(typesDir).filter((f) => f.endsWith('.d.ts'))) {
    const text = readFileSync(file, 'utf8').replace(
      /(from |import\()(['"])@cm\/([a-z-]+)((?:\/[^'"]*)?)\2/g,
      (_m, kw: string, q: string, lib: string, sub: string) => {
        const target = join(typesDir, lib, sub ? sub.slice(1) : 'src/index');
        let rel = relative(dirname(file), target);
        if (!rel.startsWith('.')) rel = `./${rel}`;
        return `${kw}${q}${rel}${q}`;
      },
    );
    writeFileSync(file, text);
  }
  return relative(pkgDir, join(typesDir, 'watch', 'src', 'index.d.ts'));
}

export async function packSdk(outDir: string): Promise<string> {
  const pkgDir = mkdtempSync(join(tmpdir(), 'cm-sdk-'));
  try {
    const dist = join(pkgDir, 'dist');
    mkdirSync(dist, { recursive: true });
    const common = {
      bundle: true,
      platform: 'node' as const,
      target: 'node20',
      format: 'cjs' as const,
      external: [...DEPENDENCIES, ...PEERS, 'chdb/*'],
      plugins: [sdkPlugin],
      logLevel: 'warning' as const,
      sourcemap: false,
    };
    await build({
      ...common,
      entryPoints: [join(ROOT, 'libs/watch/src/index.ts')],
      outfile: join(dist, 'index.js'),
    });
    await build({
      ...common,
      entryPoints: [join(ROOT, 'libs/dissect/src/worker.ts')],
      outfile: join(dist, 'dissect-worker.js'),
    });
    // the dissection kernels are WebAssembly text files read at run time (libs/dissect wasm-kernel.ts)
    const kernels = join(ROOT, 'libs/dissect/src');
    for (const f of readdirSync(kernels).filter((n) => n.endsWith('.wat')))
      cpSync(join(kernels, f), join(dist, f));
    cpSync(join(ROOT, 'protos'), join(dist, 'protos'), { recursive: true });
    const types = emitTypes(pkgDir);
    const pin = (names: string[]) =>
      Object.fromEntries(
        names.map((n) => {
          const v = rootPkg.dependencies[n];
          if (!v) throw new Error(`pack: ${n} is not a dependency of the root package.json`);
          return [n, v];
        }),
      );
    writeFileSync(
      join(pkgDir, 'package.json'),
      JSON.stringify(
        {
          name: NAME,
          version: rootPkg.version,
          description:
            'Concept-Monitor for tfjs: watch(model) labels every hidden neuron with a concept as the network trains.',
          license: rootPkg.license,
          main: 'dist/index.js',
          types,
          exports: { '.': { types: `./${types}`, require: './dist/index.js', default: './dist/index.js' } },
          files: ['dist', 'README.md'],
          engines: { node: '>=20' },
          dependencies: pin(DEPENDENCIES),
          peerDependencies: pin(PEERS),
        },
        null,
        2,
      ) + '\n',
    );
    writeFileSync(
      join(pkgDir, 'README.md'),
      `# concept-monitor\n\nwatch() for tfjs, packed from the Concept-Monitor repository (see its README, "Monitor your own training").\n\n\`\`\`ts\nimport { watch } from 'concept-monitor';\nconst watcher = await watch(model, { probe: 'path/to/bundle', every: 100, target: '127.0.0.1:50051' });\nfor (let step = 0; step <= steps; step++) { /* train */ await watcher.step(step, { loss }); }\nawait watcher.close();\n\`\`\`\n`,
    );
    mkdirSync(outDir, { recursive: true });
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', resolve(outDir)], {
      cwd: pkgDir,
      encoding: 'utf8',
    });
    return join(resolve(outDir), out.trim().split('\n').pop()!);
  } finally {
    rmSync(pkgDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'dist', 'sdk') } } });
  packSdk(values.out!).then(
    (tarball) => process.stdout.write(`${tarball}\n`),
    (e: unknown) => {
      process.stderr.write(`pack:sdk: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
