// How soon an app learns of an event: an event written by the server reaches a Server-Sent Events
// client (the session stream and the firehose) after how long, against the baseline of polling the
// paged API every 500 ms, in the same process. Run: node dist/bench/live-events.js
import { startTestServer, testApiKey } from '../test/support/server.js';
import { openEventStream } from '../test/support/sse.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 50);
const t = await startTestServer('bench-live-events');
const auth = { authorization: `Bearer ${testApiKey}` };
const session = await t.api.createSession({});
await t.waitForState(session.id, ['ready']);

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]!;
const waitFor = async (check: () => boolean) => {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
};

const stream = await openEventStream(`${t.server.url}/v1/sessions/${session.id}/events`, auth);
const hose = await openEventStream(`${t.server.url}/v1/events`, auth);
const sse: number[] = [];
const firehose: number[] = [];
const polled: number[] = [];
for (let i = 0; i < rounds; i++) {
  const before = stream.messages.length;
  const hoseBefore = hose.messages.length;
  const started = performance.now();
  await t.server.store.appendEvent(session.id, { type: 'viewer.connected', details: { round: i } });
  await Promise.all([
    waitFor(() => stream.messages.length > before).then(() => sse.push(performance.now() - started)),
    waitFor(() => hose.messages.length > hoseBefore).then(() => firehose.push(performance.now() - started)),
  ]);
}
// The baseline: an app polling the paged API every 500 ms, as it had to before. An event lands at a
// random point of the poller's period, so it waits for the rest of the period (500 - offset), then
// one request; the poll here is made at once and that wait is added, so the bench does not sleep it.
let after = (await t.api.listEventsPage(session.id, { limit: 1000 })).nextAfter;
for (let i = 0; i < Math.min(rounds, 20); i++) {
  const offset = Math.random() * 500;
  await new Promise((resolve) => setTimeout(resolve, offset));
  const started = performance.now();
  await t.server.store.appendEvent(session.id, { type: 'viewer.connected', details: { poll: i } });
  for (;;) {
    const page = await t.api.listEventsPage(session.id, { after });
    if (page.events.length > 0) {
      after = page.nextAfter;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  polled.push(performance.now() - started + (500 - offset));
}
stream.close();
hose.close();
await t.stop();
const row = (name: string, v: number[]) =>
  `${name.padEnd(28)} p50 ${percentile(v, 50).toFixed(1).padStart(7)} ms   p95 ${percentile(v, 95).toFixed(1).padStart(7)} ms`;
console.log(row('session stream (SSE)', sse));
console.log(row('firehose (SSE)', firehose));
console.log(row('polling every 500 ms', polled));
console.log(`ratio p50 polling / SSE: ${(percentile(polled, 50) / percentile(sse, 50)).toFixed(0)}×`);
process.exit(0);
