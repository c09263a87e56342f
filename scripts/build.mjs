// Builds dist/ with esbuild: the server, CLI, tests and benches transpiled file by file (the layout
// stays, so stack traces and relative paths read the same), the agent bundled to one file (what a
// sandbox or an image carries), and the viewer bundled for browsers with noVNC inside.
import { build } from 'esbuild';
import { cp, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
const define = { __PORTHOLE_VERSION__: JSON.stringify(process.env.PORTHOLE_BUILD_VERSION ?? pkg.version) };
// PORTHOLE_DIST builds elsewhere (e.g. to run one suite while another build is in use).
const out = process.env.PORTHOLE_DIST ?? join(root, 'dist');

async function walk(dir, keep) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await walk(path, keep)));
    else if (keep(path)) found.push(path);
  }
  return found;
}

const started = Date.now();
await rm(out, { recursive: true, force: true });

// The viewer's pages are bundled for browsers below; its lib/ modules are also transpiled here, file
// by file, so node tests import the pure ones (test/viewer) without a browser.
const isNodeTs = (p) => p.endsWith('.ts') && !p.endsWith('.d.ts') && (!p.includes('/src/viewer/') || p.includes('/src/viewer/lib/'));
const nodeEntries = [
  ...(await walk(join(root, 'src'), isNodeTs)),
  ...(await walk(join(root, 'test'), isNodeTs)),
  ...(await walk(join(root, 'bench'), isNodeTs)),
];

await Promise.all([
  build({
    entryPoints: nodeEntries,
    outdir: out,
    outbase: root,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'inline',
    define,
    logLevel: 'warning',
  }),
  build({
    entryPoints: [join(root, 'src/agent/main.ts')],
    outfile: join(out, 'agent/porthole-agent.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    define,
    banner: { js: `// porthole agent ${define.__PORTHOLE_VERSION__} (bundled; see src/agent)` },
    logLevel: 'warning',
  }),
  // The demo provider's CLI, one file beside the agent: the local driver mounts it in sandboxes.
  build({
    entryPoints: [join(root, 'src/demo/cli/main.ts')],
    outfile: join(out, 'agent/porthole-demo-cli.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    define,
    banner: { js: `// porthole demo CLI ${define.__PORTHOLE_VERSION__} (bundled; see src/demo/cli)` },
    logLevel: 'warning',
  }),
  build({
    entryPoints: (await walk(join(root, 'src/viewer'), (p) => p.endsWith('.ts'))).filter((p) => !p.includes('/lib/')),
    outdir: join(out, 'viewer'),
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    // No source maps: porthole serves the bundles as built, not its sources (server code keeps its inline maps for stack traces).
    sourcemap: false,
    define,
    logLevel: 'warning',
  }).catch((error) => {
    if (String(error).includes('No matching entry') || String(error).includes('entryPoints')) return;
    throw error;
  }),
]);

// Non-code assets: SQL migrations next to their transpiled loader, the viewer's pages and styles.
await mkdir(join(out, 'src/store/migrations'), { recursive: true });
await cp(join(root, 'src/store/migrations'), join(out, 'src/store/migrations'), {
  recursive: true,
  filter: (p) => !p.endsWith('.ts'),
});
for (const asset of await walk(join(root, 'src/viewer'), (p) => /\.(html|css|svg)$/.test(p))) {
  await cp(asset, join(out, 'viewer', relative(join(root, 'src/viewer'), asset)));
}
console.log(`build: dist/ in ${Date.now() - started} ms`);
