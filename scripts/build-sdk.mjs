// Builds the SDK (sdk/, the @porthole/sdk package) into sdk/dist: JavaScript, declarations and
// their maps, by tsc with sdk/tsconfig.json. Separate from the server's build (scripts/build.mjs),
// which transpiles without types; this one is what the package publishes.
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const started = Date.now();
await rm(join(root, 'sdk/dist'), { recursive: true, force: true });
const tsc = spawnSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'sdk/tsconfig.json')], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) {
  console.error(`build-sdk: tsc failed (exit ${tsc.status ?? tsc.signal})`);
  process.exit(1);
}
console.log(`build-sdk: sdk/dist in ${Date.now() - started} ms`);
