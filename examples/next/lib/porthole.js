// The app's server-side use of porthole: one SDK client with the app's key, and what the app has
// learnt about its sessions (kept in memory here; a real app keeps it in its database).
import { Porthole } from '@porthole/sdk';

/** Created on first use: `next build` loads the routes without porthole's environment. */
let client = null;
export function porthole() {
  client ??= new Porthole({ baseUrl: process.env.PORTHOLE_URL ?? 'http://127.0.0.1:8480', apiKey: process.env.PORTHOLE_API_KEY });
  return client;
}

/**
 * What the app has seen: the webhooks it verified and, per session, the states its live event
 * stream reported. On globalThis because Next.js loads each route as a module of its own.
 */
globalThis.portholeExample ??= { webhooks: [], states: {} };
export const seen = globalThis.portholeExample;

/** Follows a session's live events (SSE) until it settles, recording each state it enters. */
export async function followSession(sessionId) {
  seen.states[sessionId] ??= [];
  const states = seen.states[sessionId];
  try {
    for await (const event of porthole().events(sessionId)) {
      if (event.to && states.at(-1) !== event.to) states.push(event.to);
    }
  } catch (error) {
    console.error(`events of ${sessionId}: ${error.message}`);
  }
}
