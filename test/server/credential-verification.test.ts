import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { credentialResponse } from '../../src/protocol/credentials.js';
import { newSessionId, type SessionId } from '../../src/protocol/ids.js';
import { sessionSchema, type ProviderName } from '../../src/protocol/session.js';
import { providers } from '../../src/providers/index.js';
import { hashAgentToken } from '../../src/server/sessions/agent-token.js';
import { claudeCodeFile, codexFile, credentialSecret, geminiCliFile } from '../support/credential-files.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The real providers' credentials through the agent's delivery route: porthole cannot reach their
// servers, so a well-formed file is stored and marked `offline-checks-only` (on the session, in the
// credentials API and in the store), and a file that fails the offline checks fails the session
// with CREDENTIAL_UNVERIFIED. The sessions have no sandbox (made in the store): a real CLI's login
// is not needed to deliver a file, and no reconcile pass runs during the test to end them.

let t: TestServer;

before(async () => {
  t = await startTestServer('credential-verification', { PORTHOLE_RECONCILE_INTERVAL_MS: '3600000' });
});
after(() => t?.stop());

async function sessionWithToken(provider: ProviderName): Promise<{ id: SessionId; token: string }> {
  const id = newSessionId();
  const created = await t.server.store.createSession({ id, provider, userId: null });
  await t.server.store.transition(id, { from: 'starting', to: 'ready', expectVersion: created.version, reason: 'desktop_answered' });
  const token = randomBytes(32).toString('base64url');
  await t.server.store.setAgentTokenHash(id, hashAgentToken(token));
  return { id, token };
}

async function deliver(
  provider: ProviderName,
  id: string,
  token: string,
  content: string,
): Promise<{ status: number; json: Record<string, unknown> & { error?: { code: string; details?: { reason?: string } } } }> {
  const response = await fetch(`${t.server.url}/v1/agent/sessions/${id}/credentials`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    // What the agent claims beside the file is not what gets stored.
    body: JSON.stringify({ provider, file: providers[provider].credentialFile, content, expiresAt: '2099-01-01T00:00:00.000Z', account: 'ceo@victim.example' }),
  });
  return { status: response.status, json: (await response.json()) as never };
}

const cases: ReadonlyArray<{
  provider: ProviderName;
  good: () => Record<string, unknown>;
  account: string | null;
  forge: (file: Record<string, unknown>) => void;
}> = [
  {
    provider: 'claude-code',
    good: claudeCodeFile,
    account: null,
    forge: (file) => ((file.claudeAiOauth as Record<string, unknown>).accessToken = `made-up-${credentialSecret}-0123456789`),
  },
  {
    provider: 'codex',
    good: codexFile,
    account: 'ada@example.com',
    forge: (file) =>
      ((file.tokens as Record<string, unknown>).id_token =
        `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{"iss":"https://evil.example","email":"ceo@victim.example"}').toString('base64url')}.c2ln`),
  },
  {
    provider: 'gemini-cli',
    good: geminiCliFile,
    account: 'grace@example.com',
    forge: (file) => (file.refresh_token = `rt_${credentialSecret}_made_up_token`),
  },
];

for (const c of cases) {
  describe(`${c.provider} delivery`, () => {
    test('a well-formed file is stored as offline-checks-only, with the file’s own account and expiry', async () => {
      const { id, token } = await sessionWithToken(c.provider);
      const content = JSON.stringify(c.good(), null, 2);
      const delivered = await deliver(c.provider, id, token, content);
      assert.equal(delivered.status, 201, JSON.stringify(delivered.json));

      const session = sessionSchema.parse(await t.api.getSession(id));
      assert.equal(session.state, 'completed');
      assert.deepEqual(
        { ...session.credential, capturedAt: '' },
        {
          provider: c.provider,
          account: c.account,
          capturedAt: '',
          expiresAt: '2031-05-06T07:08:09.000Z',
          verification: 'offline-checks-only',
          state: 'active',
          refreshedAt: null,
          refreshError: null,
        },
      );
      const read = credentialResponse.parse(await t.api.getCredentials(id));
      assert.deepEqual([read.verification, read.account, read.file], ['offline-checks-only', c.account, content]);
      assert.equal((await t.server.store.getCredential(id))?.verification, 'offline-checks-only');
      const stored = (await t.api.listEvents(id)).events.find((e) => e.type === 'credentials.stored');
      assert.equal(stored?.details.verification, 'offline-checks-only');
    });

    test('a shape-invalid file is refused with CREDENTIAL_UNVERIFIED and fails the session; nothing is stored', async () => {
      const { id, token } = await sessionWithToken(c.provider);
      const file = c.good();
      c.forge(file);
      const delivered = await deliver(c.provider, id, token, JSON.stringify(file));
      assert.deepEqual([delivered.status, delivered.json.error?.code], [422, 'CREDENTIAL_UNVERIFIED']);
      assert.ok(!JSON.stringify(delivered.json).includes(credentialSecret), 'the refusal never echoes the file');
      const session = await t.api.getSession(id);
      assert.deepEqual([session.state, session.reason], ['failed', 'CREDENTIAL_UNVERIFIED']);
      assert.match(session.detail ?? '', /^The credential did not verify with the provider: /);
      assert.equal(session.credential, null);
      assert.equal(await t.server.store.getCredential(id), null);
    });
  });
}
