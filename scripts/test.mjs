// `npm test`: typecheck, lint the import direction, check formatting and lint rules (biome), run every test file with node's test runner,
// then check that nothing was left behind (sandbox processes, test servers, temp directories).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const only = process.argv.slice(2);
const started = Date.now();

function step(name, command, args, options = {}) {
  const t = Date.now();
  process.stderr.write(`\n== ${name}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options });
  process.stderr.write(
    `== ${name}: ${result.status === 0 ? 'ok' : `FAILED (exit ${result.status ?? result.signal})`} in ${((Date.now() - t) / 1000).toFixed(1)} s\n`,
  );
  return result.status === 0;
}

function findTests(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...findTests(path));
    else if (entry.name.endsWith('.test.js')) out.push(path);
  }
  return out.sort();
}

/** Processes that belong to test sandboxes or test databases; see test/support. */
function leftovers() {
  const found = [];
  const [firstUid, lastUid] = String(process.env.PORTHOLE_TEST_SANDBOX_UIDS ?? '61100-61199')
    .split('-')
    .map(Number);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      // A zombie has released everything; only its exit status waits for a reaper (here pid 1).
      if (/^State:\s+Z/m.test(status)) continue;
      const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if ((Number(uid) >= firstUid && Number(uid) <= lastUid) || cmdline.includes('porthole-test-'))
        found.push(`process ${pid} (uid ${uid}): ${cmdline.slice(0, 120)}`);
    } catch {
      // the process ended while we looked
    }
  }
  for (const name of readdirSync(tmpdir())) {
    if (name.startsWith('porthole-test-')) found.push(`directory ${join(tmpdir(), name)}`);
  }
  // Network namespaces (`ip netns add`; test/server/egress-proxy.test.ts); a veth pair made into one goes with it.
  for (const name of existsSync('/run/netns') ? readdirSync('/run/netns') : []) {
    if (name.startsWith('porthole-test-')) found.push(`network namespace ${name}`);
  }
  // The test cluster's bridge and veths (test/support/cluster.ts: `ptc<id>b`, `ptc<id>h<n>`).
  for (const name of existsSync('/sys/class/net') ? readdirSync('/sys/class/net') : []) {
    if (/^ptc[0-9a-f]{4}[bhn]\d*$/.test(name)) found.push(`network link ${name}`);
  }
  return found;
}

let ok = true;
if (only.length === 0) {
  ok = step('typecheck', 'npx', ['tsc', '-p', 'tsconfig.json']) && ok;
  // The SDK (sdk/, @porthole/sdk) is its own package with its own tsconfig.
  ok = step('typecheck (sdk)', 'npx', ['tsc', '-p', 'sdk/tsconfig.json', '--noEmit']) && ok;
  ok = step('lint (import direction)', 'npx', ['depcruise', '--config', '.dependency-cruiser.cjs', '--output-type', 'err', 'src']) && ok;
  // Formatting and the lint rules (biome.json); `npm run format` writes what it can fix.
  ok = step('format and lint (biome)', 'npx', ['biome', 'ci', '--reporter=summary', '.']) && ok;
}
const before = leftovers();
if (before.length > 0) {
  process.stderr.write(`\nleftovers from an earlier run (not this one's fault, but cleaning them is):\n  ${before.join('\n  ')}\n`);
}
// PORTHOLE_DIST (as for scripts/build.mjs) runs the tests of another build directory.
const dist = process.env.PORTHOLE_DIST ?? join(root, 'dist');
// Names are matched against the path inside the build directory (test/…), not the directory's own
// name: with PORTHOLE_DIST=.dist-cluster, `cluster` would match every file.
const files = findTests(join(dist, 'test')).filter((f) => only.length === 0 || only.some((o) => relative(dist, f).includes(o)));
// One migrated, empty PGlite database for the run, made by porthole's own openPglite and migrate();
// each test server's new data directory starts as a copy of it (test/support/pglite-template.ts).
const pgliteTemplate = mkdtempSync(join(tmpdir(), 'porthole-pglite-template-'));
const templateMade = step('PGlite template (test/support/pglite-template.ts)', process.execPath, [
  '--input-type=module',
  '-e',
  `const { openPglite } = await import(${JSON.stringify(join(dist, 'src/store/postgres/pglite-database.js'))});
   const store = await openPglite(${JSON.stringify(pgliteTemplate)});
   await store.migrate();
   await store.close();`,
]);
ok = templateMade && ok;
// TAP on the terminal as before, and the failures alone into a file, printed again at the end.
const failuresFile = join(mkdtempSync(join(tmpdir(), 'porthole-failures-')), 'failures.txt');
const reporters = [
  '--test-reporter=tap',
  '--test-reporter-destination=stdout',
  `--test-reporter=${join(root, 'scripts/failures-reporter.mjs')}`,
  `--test-reporter-destination=${failuresFile}`,
];
ok =
  step(
    `tests (${files.length} files)`,
    process.execPath,
    ['--test', '--enable-source-maps', '--test-timeout=600000', ...reporters, ...files.map((f) => relative(root, f))],
    {
      env: {
        ...process.env,
        PORTHOLE_TEST_OUTPUT: join(root, 'test-output'),
        ...(templateMade ? { PORTHOLE_TEST_PGLITE_TEMPLATE: pgliteTemplate } : {}),
      },
    },
  ) && ok;
rmSync(pgliteTemplate, { recursive: true, force: true });
const failed = existsSync(failuresFile) ? readFileSync(failuresFile, 'utf8').trim() : '';
rmSync(dirname(failuresFile), { recursive: true, force: true });
if (failed !== '') process.stderr.write(`\nfailed tests:\n${failed}\n`);

// Give killed processes a moment to die before judging.
let after = [];
for (let waited = 0; waited <= 5_000; waited += 250) {
  after = leftovers().filter((l) => !before.includes(l));
  if (after.length === 0) break;
  await new Promise((resolve) => setTimeout(resolve, 250));
}
if (after.length > 0) {
  ok = false;
  process.stderr.write(`\nLEAK: the tests left these behind:\n  ${after.join('\n  ')}\n`);
} else {
  process.stderr.write('\nleak check: no sandbox process, test server or temp directory left behind\n');
}
process.stderr.write(`\nnpm test: ${ok ? 'passed' : 'FAILED'} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
process.exit(ok ? 0 : 1);
