import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseSandboxPackages, readSandboxPackages, sandboxPackagesFile } from '../../src/cli/sandbox-packages.js';

// One list of the sandbox's Debian packages, scripts/sandbox-packages.txt: `porthole doctor` reads
// it through sandbox-packages.ts, scripts/setup.sh with awk. Both must see the same names.

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('the list parses: a Debian name and a reason on each line', async () => {
  const packages = await readSandboxPackages();
  assert.ok(packages.length >= 8, JSON.stringify(packages));
  for (const { name, why } of packages) {
    assert.match(name, /^[a-z0-9][a-z0-9+.-]+$/, `a Debian package name: ${name}`);
    assert.ok(why.length > 0, `${name} says why`);
  }
  assert.ok(packages.some((p) => p.name === 'bubblewrap'));
  assert.deepEqual(parseSandboxPackages('# c\n\n  xterm   the terminal  \n'), [{ name: 'xterm', why: 'the terminal' }]);
});

test('scripts/setup.sh installs exactly the names doctor checks, and writes none of them itself', async () => {
  const setup = await readFile(`${root}scripts/setup.sh`, 'utf8');
  const line = setup.split('\n').find((l) => l.startsWith('packages=$(') && l.includes('sandbox-packages.txt'));
  assert.ok(line, 'setup.sh reads scripts/sandbox-packages.txt');
  const command = line.slice('packages=$('.length, line.lastIndexOf(')'));
  const { stdout } = await promisify(execFile)('sh', ['-c', command], { cwd: root });
  assert.deepEqual(
    stdout.trim().split(/\s+/),
    (await readSandboxPackages()).map((p) => p.name),
  );
  for (const name of ['tigervnc-standalone-server', 'fonts-dejavu-core']) assert.ok(!setup.includes(name), `setup.sh names ${name} itself`);
  assert.equal(sandboxPackagesFile, `${root}scripts/sandbox-packages.txt`);
});
