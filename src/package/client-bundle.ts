import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PofrError } from '../errors.js';
import { pofrVersion } from '../version.js';

/** The built entry point of `pofr-client`; esbuild follows every import from here, no hand list. */
export const CLIENT_ENTRY = fileURLToPath(new URL('../cli/pofr-client.js', import.meta.url));
/** Where `npm run build` leaves the bundle for `pofr server package-client`. */
export const CLIENT_BUNDLE = fileURLToPath(new URL('../../client/pofr-client.cjs', import.meta.url));

/**
 * Server-side packages the recorder must never carry: a native addon, a database driver or the web
 * server would bring back the compiler, the size and the attack surface the single file removes.
 */
const FORBIDDEN = [
  'better-sqlite3',
  'pg',
  'pg-pool',
  'kysely',
  'fastify',
  'maxmind',
  '@ip-location-db',
  'bindings',
];

/**
 * ssh2's optional native parts (the cpu-features addon, its sshcrypto.node): it loads them in
 * try/catch and falls back to Node's crypto (AES-GCM, AES-CTR) and its bundled WebAssembly poly1305
 * (chacha20-poly1305). In the bundle they become modules that throw at once, which ssh2 catches: a
 * real require() would make Node warn that a single executable can only require built-in modules.
 */
const OPTIONAL_NATIVE = /^cpu-features$|\.node$/;

const leaveOutNative = {
  name: 'leave-out-native',
  setup(build: {
    onResolve(o: { filter: RegExp }, cb: (a: { path: string }) => { path: string; namespace: string }): void;
    onLoad(o: { filter: RegExp; namespace: string }, cb: (a: { path: string }) => { contents: string }): void;
  }) {
    build.onResolve({ filter: OPTIONAL_NATIVE }, (a) => ({ path: a.path, namespace: 'pofr-no-native' }));
    build.onLoad({ filter: /.*/, namespace: 'pofr-no-native' }, (a) => ({
      contents: `throw new Error(${JSON.stringify(`${a.path} is left out of the single-file client`)});`,
    }));
  },
};

export interface BundleReport {
  readonly path: string;
  readonly bytes: number;
  /** node_modules packages inside, by name. */
  readonly packages: readonly string[];
}

function packageOf(input: string): string | null {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  return m ? m[1] : null;
}

/**
 * Bundles the client role into one CommonJS file (what Node's single executable applications run),
 * and refuses a bundle that pulled in a server-side package: the message names the import chain's
 * first file so the culprit import can be found.
 */
export async function bundleClient(out = CLIENT_BUNDLE, entry = CLIENT_ENTRY): Promise<BundleReport> {
  // esbuild is a build-time tool (devDependency): loaded here only, never by the running server.
  const esbuild = await import('esbuild');
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    plugins: [leaveOutNative],
    define: { POFR_BUNDLED_VERSION: JSON.stringify(pofrVersion()) },
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    metafile: true,
    write: false,
    logLevel: 'silent',
  });
  const inputs = Object.keys(result.metafile.inputs);
  const packages = [...new Set(inputs.map(packageOf).filter((p): p is string => p !== null))].sort();
  const bad = packages.filter((p) => FORBIDDEN.includes(p));
  if (bad.length > 0) {
    const culprit = Object.entries(result.metafile.inputs).find(([, v]) =>
      v.imports.some((i) => bad.includes(packageOf(i.path) ?? '')),
    );
    throw new PofrError(
      'POFR_PACKAGE',
      `the client bundle would include ${bad.join(', ')} (imported by ${culprit ? relative(process.cwd(), culprit[0]) : '?'}): the client role must not import server modules`,
    );
  }
  const code = result.outputFiles[0].contents;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, code);
  return { path: out, bytes: code.length, packages };
}
