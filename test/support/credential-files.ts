import { randomBytes } from 'node:crypto';
import { codexClientId } from '../../src/providers/codex.js';
import { geminiCliClientId } from '../../src/providers/gemini-cli.js';

// Credential files of the real CLIs as they write them (docs/providers.md), with made-up tokens of
// the providers' real formats: what porthole's offline checks accept. Each token starts with
// `credentialSecret`, so a test can tell when content leaks into a message.

export const credentialSecret = 'SECRETdoNotEcho';
/** A token of `length` URL-safe characters. */
export const fakeToken = (length: number): string => `${credentialSecret}${randomBytes(length).toString('base64url')}`.slice(0, length);
export const base64urlJson = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A JWT as the CLIs store it; the real providers' signatures cannot be checked offline, so any bytes do. */
export const fakeJwt = (claims: Record<string, unknown>, header: Record<string, unknown> = { alg: 'RS256', typ: 'JWT', kid: 'k1' }): string =>
  `${base64urlJson(header)}.${base64urlJson(claims)}.${randomBytes(64).toString('base64url')}`;

/** When the files' access tokens expire. */
export const credentialExpiry = Date.parse('2031-05-06T07:08:09.000Z');
const exp = Math.floor(credentialExpiry / 1000);

export const claudeCodeFile = () => ({
  claudeAiOauth: {
    accessToken: `sk-ant-oat01-${fakeToken(95)}`,
    refreshToken: `sk-ant-ort01-${fakeToken(95)}`,
    expiresAt: credentialExpiry,
    scopes: ['user:inference', 'user:profile', 'user:sessions:claude_code'],
    subscriptionType: 'max',
  },
});

export const codexFile = () => ({
  OPENAI_API_KEY: null,
  tokens: {
    id_token: fakeJwt({
      iss: 'https://auth.openai.com',
      aud: [codexClientId],
      sub: 'auth0|user-1',
      email: 'ada@example.com',
      exp,
      'https://api.openai.com/auth': { chatgpt_account_id: 'acc-1', chatgpt_plan_type: 'plus' },
    }),
    access_token: fakeJwt({ iss: 'https://auth.openai.com', aud: ['https://api.openai.com/v1'], sub: 'auth0|user-1', exp }),
    refresh_token: `rt_${fakeToken(60)}`,
    account_id: 'acc-1',
  },
  last_refresh: '2031-05-06T06:08:09.000Z',
});

export const geminiCliFile = () => ({
  access_token: `ya29.${fakeToken(160)}`,
  refresh_token: `1//0g${fakeToken(98)}`,
  scope: 'https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email openid',
  token_type: 'Bearer',
  id_token: fakeJwt({ iss: 'https://accounts.google.com', aud: geminiCliClientId, azp: geminiCliClientId, sub: '1234567890', email: 'grace@example.com', exp }),
  expiry_date: credentialExpiry,
});
