import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { SessionId } from '../../src/protocol/ids.js';
import type { Run, RunEvent } from '../../src/protocol/runs.js';
import { providers } from '../../src/providers/index.js';
import { claudeCodeFile, codexFile, credentialSecret, geminiCliFile } from '../support/credential-files.js';
import { startTestServer, testApiKey, type TestServer } from '../support/server.js';
import { untilDefined } from '../support/until.js';

// Each real CLI (pinned in clis/) run non-interactively with an installed credential, in a sandbox
// with no desktop. No internet here: what is asserted is the attempt — the CLI, started with the
// credential, asks porthole's egress proxy (its only way out) for its provider's API host, and the
// attempt is on the run's timeline — not the answer. Then the run is stopped: its sandbox goes.

const cliDir = new URL('../../../clis/node_modules', import.meta.url).pathname;
let t: TestServer;

/** The credential file, the prompt's arguments, and the hosts the CLI's API is on. */
const cases = {
  'claude-code': { file: claudeCodeFile, args: ['Say hi'], apiHosts: ['api.anthropic.com'] },
  codex: { file: codexFile, args: ['Say hi'], apiHosts: ['chatgpt.com', 'api.openai.com'] },
  'gemini-cli': { file: geminiCliFile, args: ['Say hi'], apiHosts: ['cloudcode-pa.googleapis.com', 'oauth2.googleapis.com', 'www.googleapis.com'] },
} as const;

before(async () => {
  assert.ok(existsSync(cliDir), `${cliDir} is missing: the real CLIs are installed by scripts/setup.sh (npm ci --prefix clis)`);
  t = await startTestServer('e2e-real-cli-run');
});
after(async () => {
  await t?.stop();
});

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${t.server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${testApiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

for (const [name, c] of Object.entries(cases)) {
  test(`${providers[name as keyof typeof cases].displayName}: a run starts the CLI with the credential and it asks porthole’s network path for its API host`, async (ctx) => {
    const session = await t.api.createSession({});
    const content = JSON.stringify(c.file());
    const check = providers[name as keyof typeof cases].validate(content);
    assert.ok(check.ok);
    await t.server.vault.put(session.id as SessionId, { provider: name, content, expiresAt: check.expiresAt, account: null });

    const created = await api<Run>('POST', '/v1/runs', { sessionId: session.id, args: c.args, timeoutMs: 120_000 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const runId = created.body.id;
    const events = async () => (await api<{ events: RunEvent[] }>('GET', `/v1/runs/${runId}/events?limit=1000`)).body.events;
    let seen: string[] = [];
    const attempt = await untilDefined(
      `${name} to ask for its API host (${c.apiHosts.join(', ')})`,
      async () => {
        const all = await events();
        seen = all.filter((e) => e.type === 'egress.connect' || e.type === 'egress.request').map((e) => `${String(e.details.host)}:${String(e.details.port)}`);
        const failed = all.find((e) => e.type === 'run.failed' || e.type === 'run.exited');
        const hit = all.find((e) => e.type === 'egress.connect' && (c.apiHosts as readonly string[]).includes(String(e.details.host)));
        if (!hit && failed)
          assert.fail(
            `the run ended first (${JSON.stringify(failed.details)}); output: ${all
              .filter((e) => e.type === 'run.output')
              .map((e) => e.data)
              .join('')}; egress: ${seen}`,
          );
        return hit;
      },
      90_000,
    );
    assert.equal(attempt.details.allowed, false, 'no internet here: refused (the name does not resolve), and so never sent anywhere');
    const started = (await events()).find((e) => e.type === 'run.started');
    assert.ok(started, 'the CLI was started');
    const argv = started.details.argv as string[];
    assert.ok(argv.join(' ').includes(c.args[0]!), `argv: ${argv.join(' ')}`);
    ctx.diagnostic(`${name}: argv ${argv.join(' ')}; egress ${[...new Set(seen)].join(', ')}`);

    const stopped = await api<Run>('DELETE', `/v1/runs/${runId}`);
    assert.equal(stopped.status, 200);
    assert.equal(stopped.body.state, 'failed');
    assert.equal(stopped.body.reason, 'RUN_CANCELED');
    const live = new Set((await t.api.listSessions()).sessions.map((s) => s.sandboxId));
    assert.deepEqual(
      (await t.server.driver.list()).filter((s) => !live.has(s.id)).map((s) => s.id),
      [],
      'the run’s sandbox is gone',
    );
    assert.ok(!JSON.stringify(await events()).includes(credentialSecret), 'no token of the credential in the run’s timeline or output');
  });
}
