import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

// A fresh PGlite database takes 4–7 s to create on this 2-core machine (initdb in WebAssembly,
// 40 MB written through the owner-only filesystem), and the suite starts about 75 servers on new
// data directories. scripts/test.mjs creates one migrated, empty database per run with porthole's
// own openPglite and migrate() and names it in PORTHOLE_TEST_PGLITE_TEMPLATE; a test server's new
// data directory starts as a copy of it (`cp -a` keeps its 0700/0600 modes), which opens in about
// 0.5 s. Run without scripts/test.mjs (node --test on one file), every server creates its own.
// The tests of a first start itself (test/server/data-dir.test.ts) ask for a fresh database.

const run = promisify(execFile);

/** Where scripts/test.mjs put this run's template data directory (it holds `pglite/`), if it did. */
const pgliteTemplateEnv = 'PORTHOLE_TEST_PGLITE_TEMPLATE';

/** Gives `dataDir` the template's migrated, empty PGlite database, unless it has one or there is no template. */
export async function seedPglite(dataDir: string): Promise<void> {
  const template = process.env[pgliteTemplateEnv];
  if (!template || existsSync(join(dataDir, 'pglite'))) return;
  await run('cp', ['-a', join(template, 'pglite'), join(dataDir, 'pglite')]);
}
