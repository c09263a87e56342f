import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readCredentialFile } from '../../src/agent/credential-file.js';
import { maxCredentialBytes } from '../../src/protocol/agent.js';

// The agent reads the credential a CLI writes into its pinned directory, and nothing else: a
// symlink (the file or a directory on the way) could make it deliver any file the sandbox can read.

let root: string;
let dir: string;
let outside: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'porthole-test-credfile-'));
  dir = join(root, 'login');
  outside = join(root, 'outside.json');
  await mkdir(dir);
  await writeFile(outside, '{"secret":"not a credential of this login"}');
});
after(() => rm(root, { recursive: true, force: true }));

test('a plain file inside the directory is read', async () => {
  await writeFile(join(dir, 'auth.json'), '{"ok":true}');
  assert.deepEqual(await readCredentialFile(dir, 'auth.json'), { kind: 'content', content: '{"ok":true}' });
});

test('a file not written yet, or a directory not made yet, is missing (not an error)', async () => {
  assert.deepEqual(await readCredentialFile(dir, 'nothing.json'), { kind: 'missing' });
  assert.deepEqual(await readCredentialFile(dir, '.gemini/oauth_creds.json'), { kind: 'missing' });
});

test('a nested file is read once its directory exists', async () => {
  await mkdir(join(dir, '.gemini'));
  await writeFile(join(dir, '.gemini/oauth_creds.json'), '{}');
  assert.deepEqual(await readCredentialFile(dir, '.gemini/oauth_creds.json'), { kind: 'content', content: '{}' });
});

test('a credential file that is a symlink out of the directory is refused', async () => {
  await symlink(outside, join(dir, '.credentials.json'));
  const read = await readCredentialFile(dir, '.credentials.json');
  assert.equal(read.kind, 'refused');
  assert.match((read as { why: string }).why, /symbolic link/);
});

test('a directory on the way that is a symlink out is refused', async () => {
  await mkdir(join(root, 'elsewhere'));
  await writeFile(join(root, 'elsewhere', 'oauth_creds.json'), '{}');
  await symlink(join(root, 'elsewhere'), join(dir, 'linked'));
  const read = await readCredentialFile(dir, 'linked/oauth_creds.json');
  assert.equal(read.kind, 'refused');
  assert.match((read as { why: string }).why, /linked is a symbolic link/);
});

test('a path that climbs out of the directory is refused', async () => {
  assert.equal((await readCredentialFile(dir, '../outside.json')).kind, 'refused');
});

test('a file larger than a credential can be is refused, not read', async () => {
  await writeFile(join(dir, 'big.json'), 'x'.repeat(maxCredentialBytes + 1));
  const read = await readCredentialFile(dir, 'big.json');
  assert.equal(read.kind, 'refused');
  assert.match((read as { why: string }).why, /larger than/);
});
