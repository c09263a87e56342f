// Builds dist/ with esbuild: the server, CLI, tests and benches transpiled file by file (the layout
// stays, so stack traces and relative paths read the same), the agent bundled to one file (what a
// sandbox or an image carries), and the viewer bundled for browsers with noVNC inside.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { brotliCompressSync, constants as zlibConstants, gzipSync } from 'node:zlib';

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
// The SDK (sdk/, @porthole/sdk) first, when its sources changed: the tests import it by its package name.
const sdk = spawnSync(process.execPath, [join(root, 'scripts/build-sdk.mjs'), '--if-stale'], { stdio: 'inherit' });
if (sdk.status !== 0) process.exit(1);
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

// The viewer's assets, fingerprinted and compressed once here rather than on every request: each
// page refers to `/assets/<file>?v=<hash of its content>`, which the server lets browsers keep
// for a year (src/server/http/static-assets.ts), so a browser that opened the dashboard already
// holds the viewer's 450 KB; and each asset has .br and .gz siblings, sent to browsers that take them.
const viewerOut = join(out, 'viewer');
const assetNames = (await readdir(viewerOut)).filter((name) => /\.(js|css|svg)$/.test(name));
const versions = {};
for (const name of assetNames) {
  const content = await readFile(join(viewerOut, name));
  versions[name] = createHash('sha256').update(content).digest('base64url').slice(0, 16);
  await writeFile(join(viewerOut, `${name}.br`), brotliCompressSync(content, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 9 } }));
  await writeFile(join(viewerOut, `${name}.gz`), gzipSync(content, { level: 9 }));
}
for (const page of (await readdir(viewerOut)).filter((name) => name.endsWith('.html'))) {
  const html = await readFile(join(viewerOut, page), 'utf8');
  await writeFile(
    join(viewerOut, page),
    html.replace(/((?:\.\.\/)+|\/)assets\/([a-z0-9._-]+\.(?:js|css|svg))"/gi, (whole, from, name) =>
      versions[name] ? `${from}assets/${name}?v=${versions[name]}"` : whole,
    ),
  );
}
await writeFile(join(viewerOut, 'asset-versions.json'), `${JSON.stringify(versions, null, 2)}\n`);
console.log(`build: dist/ in ${Date.now() - started} ms`);
