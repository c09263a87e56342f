// Builds the SDK (sdk/, the @porthole/sdk package) into sdk/dist: JavaScript, declarations and
// their maps, by tsc with sdk/tsconfig.json. Separate from the server's build (scripts/build.mjs),
// which transpiles without types; this one is what the package publishes.
// `--if-stale` (scripts/build.mjs) skips the build when sdk/dist is newer than every input.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const started = Date.now();

/** The newest modification time under `path` (a file or a directory), 0 when it is missing. */
function newest(path) {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newest(join(path, name))));
}

if (process.argv.includes('--if-stale')) {
  const inputs = Math.max(newest(join(root, 'sdk/src')), newest(join(root, 'sdk/tsconfig.json')), newest(join(root, 'sdk/package.json')));
  const output = newest(join(root, 'sdk/dist/index.js'));
  if (output > inputs) process.exit(0);
}
await rm(join(root, 'sdk/dist'), { recursive: true, force: true });
const tsc = spawnSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'sdk/tsconfig.json')], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error(`build-sdk: tsc failed (exit ${tsc.status ?? tsc.signal})`);
  process.exit(1);
}
console.log(`build-sdk: sdk/dist in ${Date.now() - started} ms`);
