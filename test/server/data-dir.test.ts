import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { runDoctor } from '../../src/cli/doctor.js';
import { auditDataDir } from '../../src/server/data-dir.js';
import { createTestDataDir, startTestServerIn, removeTestDataDir } from '../support/restartable-server.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The red team's finding: another local user could read PGlite's WAL and write an API-key row. Here
// that user (nobody, uid 65534) tries every file and directory of a started server's data
// directory, with a live sandbox in it: nothing may be seen, read, listed, written or created.

const run = promisify(execFile);
const nobody = 65534;
let t: TestServer;

before(async () => {
  t = await startTestServer('data-dir', {}, { freshStore: true }); // PGlite's own first start makes the files whose modes are checked
  await t.readySession(); // a sandbox's directories, sockets and PGlite's WAL after real writes
});
after(() => t?.stop());

/** d: a directory; f: anything else; top: the data directory itself (that it exists is no secret). */
type Probe = { kind: 'd' | 'f' | 'top'; path: string };

/** Every path under `dir` (not following symlinks). A file gone meanwhile (PGlite's temporary ones) is skipped. */
async function walk(dir: string): Promise<Probe[]> {
  const found: Probe[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const path = join(dir, name);
    const info = await lstat(path).catch(() => null);
    if (!info) continue;
    if (info.isDirectory()) found.push({ kind: 'd', path }, ...(await walk(path)));
    else found.push({ kind: 'f', path });
  }
  return found;
}

/**
 * Runs, as uid/gid 65534 with no supplementary groups, one shell that tries each path: does it
 * exist for that user, can it read (cat) or list (ls) it, append to it (opening it for writing,
 * writing nothing), or create a file in it. Prints one line per success.
 */
async function asNobody(paths: Probe[]): Promise<string[]> {
  const script = `
for a; do
  kind=\${a%%:*}; p=\${a#*:}
  if [ "$kind" = top ]; then :; elif [ -e "$p" ] || [ -L "$p" ]; then echo "SEES $p"; fi
  if [ "$kind" = f ]; then
    cat -- "$p" >/dev/null 2>&1 && echo "READS $p"
    (: >> "$p") 2>/dev/null && echo "WRITES $p"
  else
    ls -a -- "$p" >/dev/null 2>&1 && echo "LISTS $p"
    (cd -- "$p") 2>/dev/null && echo "ENTERS $p"
    (: > "$p/.probe-by-nobody") 2>/dev/null && { echo "CREATES IN $p"; rm -f -- "$p/.probe-by-nobody"; }
  fi
done
echo DONE`;
  const args = paths.map(({ kind, path }) => `${kind}:${path}`);
  const { stdout } = await run('setpriv', [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', '--', '/bin/sh', '-c', script, 'probe', ...args], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const lines = stdout.trim().split('\n');
  assert.equal(lines.at(-1), 'DONE', 'the probe ran to its end');
  return lines.slice(0, -1);
}

test('another local user can neither see, read, list, write nor create anything in a started server’s data directory', async () => {
  const paths = await walk(t.dataDir);
  const names = paths.map((p) => p.path.slice(t.dataDir.length + 1));
  for (const expected of ['pglite', 'signing.key', 'keyring.json', 'sandboxes'])
    assert.ok(names.includes(expected), `${expected} is there: ${names.slice(0, 20).join(', ')}`);
  assert.ok(
    names.some((n) => /^pglite\/.*wal/i.test(n)),
    'the WAL is among them',
  );
  assert.ok(
    names.some((n) => /^sandboxes\/sbx_[^/]+\/run$/.test(n)),
    'a live sandbox’s directories are among them',
  );
  const successes = await asNobody([{ kind: 'top', path: t.dataDir }, ...paths]);
  assert.deepEqual(successes, [], `uid ${nobody} got through:\n${successes.slice(0, 40).join('\n')}`);

  // And the modes themselves, not only the directory in front of them: the umask gave PGlite's files 0600.
  assert.deepEqual(await auditDataDir(t.dataDir), []);
  assert.equal((await lstat(t.dataDir)).mode & 0o777, 0o700);
});

test('the control: the same probe, given a world-readable file, reports it', async () => {
  // Shows the probe can see a success (so an empty list above means something): /etc/hostname is 0644.
  assert.deepEqual(await asNobody([{ kind: 'f', path: '/etc/hostname' }]), ['SEES /etc/hostname', 'READS /etc/hostname']);
});

test('what an older porthole left open (0755 directory, PGlite files 0666, key 0644) doctor reports, and the next start tightens', async () => {
  const dataDir = await createTestDataDir({ freshStore: true });
  try {
    const first = await startTestServerIn(dataDir, 'data-dir-upgrade');
    await first.close();
    // As an older version left it.
    await chmod(dataDir, 0o755);
    for (const { kind, path } of await walk(join(dataDir, 'pglite'))) await chmod(path, kind === 'd' ? 0o755 : 0o666);
    await chmod(join(dataDir, 'pglite'), 0o755);
    await chmod(join(dataDir, 'signing.key'), 0o644);

    const loose = await auditDataDir(dataDir);
    assert.ok(
      loose.some((p) => p.path === '.' && p.mode === '0755'),
      JSON.stringify(loose.slice(0, 3)),
    );
    assert.ok(loose.some((p) => p.path.startsWith('pglite/') && p.mode === '0666' && p.problem === 'group/other access to a secret'));
    assert.ok(loose.some((p) => p.path === 'signing.key'));
    const doctor = (await runDoctor({ PORTHOLE_DATA_DIR: dataDir, PORTHOLE_URL: 'http://127.0.0.1:9' })).checks.find((c) => c.name === 'data directory modes');
    assert.equal(doctor?.status, 'failed', JSON.stringify(doctor));
    assert.match(doctor?.detail ?? '', /open to other users: \. 0755 \(group\/other access to the data directory\)/);
    assert.match(doctor?.fix ?? '', new RegExp(`^chmod 700 ${dataDir} && chmod -R go-rwx ${dataDir}/pglite ${dataDir}/signing\\.key`));

    const second = await startTestServerIn(dataDir, 'data-dir-upgrade');
    try {
      assert.deepEqual(await auditDataDir(dataDir), [], 'the start tightened the directory, pglite/ and the signing key');
      assert.match(await readFile(second.logFile, 'utf8'), /"level":40,.*"first":\[".","pglite",.*the data directory was open to other users/, 'and said so');
      const fixed = (await runDoctor({ PORTHOLE_DATA_DIR: dataDir, PORTHOLE_URL: 'http://127.0.0.1:9' })).checks.find((c) => c.name === 'data directory modes');
      assert.equal(fixed?.status, 'ok', JSON.stringify(fixed));
    } finally {
      await second.close();
    }
  } finally {
    await removeTestDataDir(dataDir);
  }
});
