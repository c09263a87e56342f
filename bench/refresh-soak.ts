// The single refresher over real time: two porthole servers on one PostgreSQL, the demo provider
// with 60 s access tokens (rotating refresh tokens, reuse revokes the grant), one captured grant.
// For BENCH_MINUTES (10), every 5 s an access token is asked of each server in turn and shown to the
// provider's userinfo. Reports how many windows passed, how many refreshes each server made, the
// shortest gap between two refreshes (one per window: never two side by side) and any refusal.
// Run: node dist/bench/refresh-soak.js   (BENCH_MINUTES, BENCH_TTL_S)
import { randomBytes } from 'node:crypto';
import type { SessionEvent } from '../src/protocol/session.js';
import { deliverDemoCredential } from '../test/support/demo-sign-in.js';
import { startPostgres } from '../test/support/postgres.js';
import { startTestServer, type TestServer } from '../test/support/server.js';

const minutes = Number(process.env.BENCH_MINUTES ?? 10);
const ttlS = Number(process.env.BENCH_TTL_S ?? 60);
const pg = await startPostgres();
const shared = { DATABASE_URL: pg.url, PORTHOLE_MASTER_KEY: randomBytes(32).toString('base64') };
const a = await startTestServer('bench-soak-a', { ...shared, PORTHOLE_DEMO_ACCESS_TOKEN_TTL_S: String(ttlS) });
const issuer = a.server.demoOidc!.issuer;
const b = await startTestServer('bench-soak-b', { ...shared, PORTHOLE_DEMO_ISSUER: issuer, PORTHOLE_RECONCILE_INTERVAL_MS: '3600000' });

const session = await a.readySession({ provider: 'demo', userId: 'soak' });
await deliverDemoCredential(a, session.id, issuer);
const started = Date.now();
let asked = 0;
let accepted = 0;
const refused: string[] = [];
while (Date.now() - started < minutes * 60_000) {
  const server = asked++ % 2 === 0 ? a : b;
  try {
    const { accessToken } = await server.api.getAccessToken(session.id);
    const status = (await fetch(`${issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } })).status;
    if (status === 200) accepted++;
    else refused.push(`userinfo ${status} at ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } catch (error) {
    refused.push(`${(error as Error).message} at ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  await new Promise((resolve) => setTimeout(resolve, 5_000));
}
const elapsedS = (Date.now() - started) / 1000;
const events: SessionEvent[] = [];
for (let after = 0; ; ) {
  const page = await a.api.listEventsPage(session.id, { after, limit: 500 });
  events.push(...page.events);
  if (!page.hasMore) break;
  after = page.nextAfter;
}
const refreshes = events.filter((e) => e.type === 'credential.refreshed');
const others = events.filter((e) => e.type === 'credential.refresh_failed' || e.type === 'credential.needs_login');
const gaps = refreshes.slice(1).map((e, i) => (Date.parse(e.at) - Date.parse(refreshes[i]!.at)) / 1000);
const countOf = async (t: TestServer) => {
  const metric = await t.server.metrics.registry.getSingleMetric('porthole_credential_refresh_seconds')?.get();
  const values = (metric?.values ?? []) as { metricName?: string; labels: Record<string, string | number>; value: number }[];
  return values.find((v) => v.metricName === 'porthole_credential_refresh_seconds_count' && v.labels.outcome === 'refreshed')?.value ?? 0;
};
const [byA, byB] = [await countOf(a), await countOf(b)];
await b.stop();
await a.stop();
await pg.stop();

console.log(`${elapsedS.toFixed(0)} s with ${ttlS} s access tokens: ${(elapsedS / ttlS).toFixed(1)} windows`);
console.log(`access tokens handed out and accepted by userinfo: ${accepted} of ${asked}; refused: ${refused.length ? refused.join('; ') : 'none'}`);
console.log(`refreshes: ${refreshes.length} (server a ${byA}, server b ${byB}); failed or refused: ${others.length}`);
console.log(
  `gap between refreshes: min ${Math.min(...gaps).toFixed(1)} s, max ${Math.max(...gaps).toFixed(1)} s (a refresh is due ${ttlS / 5} s ±20 % before expiry)`,
);
console.log(`refreshes per window: ${(refreshes.length / (elapsedS / ttlS)).toFixed(2)}`);
