// What porthole's single refresher and its runs cost, each against its baseline in the same process:
// - a refresh through porthole (claim the lease, the grant, store the sealed file and its event)
//   against the bare refresh grant at the demo provider;
// - a run (POST /v1/runs → the demo CLI's first output, and → the run over, its sandbox gone)
//   against the same demo CLI `run whoami` started directly on this host with the same file.
// Run: node dist/bench/remote-cli.js   (BENCH_ROUNDS, default 10)
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RunEvent } from '../src/protocol/runs.js';
import { deliverDemoCredential, demoSignIn } from '../test/support/demo-sign-in.js';
import { startTestServer, testApiKey } from '../test/support/server.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 10);
const t = await startTestServer('bench-remote-cli');
const issuer = t.server.demoOidc!.issuer;
const auth = { authorization: `Bearer ${testApiKey}` };
const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]!;
const row = (name: string, v: number[]) =>
  `${name.padEnd(44)} p50 ${percentile(v, 50).toFixed(1).padStart(8)} ms   p95 ${percentile(v, 95).toFixed(1).padStart(8)} ms`;

const session = await t.readySession({ provider: 'demo', userId: 'bench' });
await deliverDemoCredential(t, session.id, issuer);

// Refresh: porthole's (claim the grant's lease, the grant, seal and store the file with its event);
// the baseline, the bare refresh grant on a grant of its own.
const viaPorthole: number[] = [];
for (let i = 0; i < rounds; i++) {
  const before = (await t.server.store.getCredential(session.id as never))!.version;
  const started = performance.now();
  await t.server.refresher.refreshNow(session.id as never, { evenIfNotDue: true });
  viaPorthole.push(performance.now() - started);
  if ((await t.server.store.getCredential(session.id as never))!.version !== before + 1) throw new Error('porthole did not refresh');
}
let own = await demoSignIn(issuer);
const bare: number[] = [];
for (let i = 0; i < rounds; i++) {
  const started = performance.now();
  const response = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: own.refresh_token, client_id: 'porthole-demo-cli' }),
  });
  const body = (await response.json()) as { refresh_token: string };
  own = { ...own, refresh_token: body.refresh_token };
  bare.push(performance.now() - started);
}

// Runs against the demo CLI on the host.
const firstOutput: number[] = [];
const whole: number[] = [];
for (let i = 0; i < rounds; i++) {
  const started = performance.now();
  const created = await fetch(`${t.server.url}/v1/runs`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ sessionId: session.id, args: ['whoami'] }),
  });
  const run = (await created.json()) as { id: string };
  let seenOutput = false;
  for (;;) {
    const page = (await (await fetch(`${t.server.url}/v1/runs/${run.id}/events?limit=1000`, { headers: auth })).json()) as { events: RunEvent[] };
    if (!seenOutput && page.events.some((e) => e.type === 'run.output')) {
      seenOutput = true;
      firstOutput.push(performance.now() - started);
    }
    if (page.events.some((e) => e.type === 'run.finished')) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const done = (await (await fetch(`${t.server.url}/v1/runs/${run.id}`, { headers: auth })).json()) as { state: string };
  if (done.state !== 'succeeded') throw new Error(`run ${run.id} ${done.state}`);
  whole.push(performance.now() - started);
}
const home = await mkdtemp(join(tmpdir(), 'porthole-bench-cli-'));
const demoCli = new URL('../agent/porthole-demo-cli.mjs', import.meta.url).pathname;
const { file } = await t.api.getCredentials(session.id);
const direct: number[] = [];
for (let i = 0; i < rounds; i++) {
  await writeFile(join(home, 'credentials.json'), file, { mode: 0o600 });
  const started = performance.now();
  await promisify(execFile)(process.execPath, [demoCli, 'run', 'whoami'], { env: { ...process.env, PORTHOLE_DEMO_HOME: home } });
  direct.push(performance.now() - started);
}
await rm(home, { recursive: true, force: true });
await t.stop();

console.log(row('refresh through porthole', viaPorthole));
console.log(row('refresh grant at the provider (baseline)', bare));
console.log(`ratio p50 porthole / bare refresh: ${(percentile(viaPorthole, 50) / percentile(bare, 50)).toFixed(2)}×`);
console.log(row('run: POST → first output', firstOutput));
console.log(row('run: POST → over, sandbox gone', whole));
console.log(row('demo CLI on the host (baseline)', direct));
console.log(`ratio p50 run (first output) / CLI on the host: ${(percentile(firstOutput, 50) / percentile(direct, 50)).toFixed(2)}×`);
console.log(`ratio p50 run (whole) / CLI on the host: ${(percentile(whole, 50) / percentile(direct, 50)).toFixed(2)}×`);
