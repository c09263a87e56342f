import { createHash, randomBytes } from 'node:crypto';

// The sandbox token: made for a session with a provider at its `login` start-up step (boot.ts) and
// handed to the agent only; the store keeps its hash, and the agent's calls to the server carry it
// as `Authorization: Bearer`, checked against that hash (authenticateAgent in http/auth.ts).

/** A fresh sandbox token: 32 random bytes, base64url. */
export function newAgentToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The server keeps only this of a sandbox token. */
export function hashAgentToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
