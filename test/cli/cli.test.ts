import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';

const run = promisify(execFile);
const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
let t: TestServer;

before(async () => {
  t = await startTestServer('cli');
});
after(() => t?.stop());

function porthole(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [cli, ...args], { env: { ...process.env, PORTHOLE_URL: t.server.url, PORTHOLE_API_KEY: testApiKey, ...env } }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

test('sessions create shows each start-up step, then a viewer link; list, events and end work', async () => {
  const created = await porthole(['sessions', 'create', '--user', 'cli-user']);
  assert.equal(created.code, 0, created.stderr);
  const id = /session (ses_[0-9a-z]+) starting/.exec(created.stdout)?.[1];
  assert.ok(id, created.stdout);
  for (const label of ['Starting the sandbox', 'Waiting for the sandbox agent', 'Connecting to the desktop']) {
    assert.match(created.stdout, new RegExp(`${label}: done in \\d+ ms`));
  }
  assert.match(created.stdout, new RegExp(`${t.server.url}/v1/sessions/${id}/viewer\\?ticket=`));

  const list = await porthole(['sessions', 'list']);
  assert.match(list.stdout, new RegExp(`${id}\\s+ready`));
  const events = await porthole(['sessions', 'events', id]);
  assert.match(events.stdout, /session\.ready\s+starting → ready/);
  const ended = await porthole(['sessions', 'end', id]);
  assert.match(ended.stdout, new RegExp(`session ${id} ended \\(user\\)`));
});

test('errors carry their code and exit status', async () => {
  const missing = await porthole(['sessions', 'end', 'ses_00000000000000000000']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /SESSION_NOT_FOUND/);
  const badKey = await porthole(['sessions', 'list'], { PORTHOLE_API_KEY: 'wrong-key-000000000' });
  assert.equal(badKey.code, 1);
  assert.match(badKey.stderr, /API_KEY_INVALID/);
  const usage = await porthole(['sessions', 'fly']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /unknown command/);
  const down = await porthole(['sessions', 'list'], { PORTHOLE_URL: 'http://127.0.0.1:9' });
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach porthole at http:\/\/127\.0\.0\.1:9/);
});

test('nodes list shows this all-in-one as an active node; drain refuses new sessions by name, undrain takes them again', async () => {
  const id = t.server.node.id;
  const list = await porthole(['nodes', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^ID\s+STATE\s+GEN\s+LOAD\s+HEARTBEAT\s+URL/);
  assert.match(list.stdout, new RegExp(`${id}\\s+active\\s+1\\s+\\d+/\\d+\\s+\\d+\\.\\d s\\s+\\(all-in-one\\)`));
  const drained = await porthole(['nodes', 'drain', id]);
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stdout, new RegExp(`node ${id} is draining`));
  try {
    const refused = await porthole(['sessions', 'create', '--no-wait']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /NO_CAPACITY/);
    assert.match((await porthole(['nodes', 'list'])).stdout, /draining\s+1 .*drained by an operator/);
  } finally {
    const undrained = await porthole(['nodes', 'undrain', id]);
    assert.match(undrained.stdout, new RegExp(`node ${id} is active`));
  }
  const json = JSON.parse((await porthole(['nodes', 'list', '--json'])).stdout) as { id: string; state: string }[];
  assert.deepEqual(
    json.map((n) => [n.id, n.state]),
    [[id, 'active']],
  );
  const unknown = await porthole(['nodes', 'drain', 'no-such-node']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /NODE_NOT_FOUND/);
  assert.equal((await porthole(['nodes', 'drain'])).code, 2);
});
