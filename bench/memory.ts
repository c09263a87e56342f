// What a desktop costs in memory, measured, not multiplied out:
//  1. the PSS (proportional set size: shared pages split among their users) of an idle pooled
//     desktop and of a live session with the demo sign-in page open, summed over the sandbox's
//     processes;
//  2. N sessions (BENCH_SESSIONS, default 12) running together: the host's MemAvailable before and
//     with all N live, the drop per session at N/3, 2N/3 and N (to show it stays linear), and how
//     many sessions 24 GiB holds at the measured cost per session, less what the host uses
//     without any.
//   node dist/bench/memory.js
import { readFile } from 'node:fs/promises';
import { startTestServer } from '../test/support/server.js';
import { until } from '../test/support/until.js';
import { liveSession, MiB, sandboxPss, settle } from './sandbox-memory.js';

const sessions = Number(process.env.BENCH_SESSIONS ?? 12);

async function meminfo(field: string): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1];
  if (!kb) throw new Error(`no ${field} in /proc/meminfo`);
  return Number(kb) * 1024;
}

const rows: string[] = [];
{
  const t = await startTestServer('bench-memory-one', { PORTHOLE_WARM_POOL: '1', PORTHOLE_MAX_SESSIONS: '2', PORTHOLE_LOG_LEVEL: 'info' });
  try {
    const pool = t.server.sessions.pool!;
    await until(
      'a pooled desktop',
      () => pool.readyCount,
      (n) => n >= 1,
      60_000,
    );
    await settle();
    const [pooled] = await t.server.store.listPooledSandboxes();
    const idle = await sandboxPss(t, pooled!.sandboxId);
    rows.push(`idle pooled desktop        PSS ${(idle.bytes / MiB).toFixed(0).padStart(5)} MiB  (${idle.processes} processes)`);
    const live = await liveSession(t);
    await settle();
    const used = await sandboxPss(t, live.sandboxId);
    rows.push(`live session, sign-in open PSS ${(used.bytes / MiB).toFixed(0).padStart(5)} MiB  (${used.processes} processes)`);
  } finally {
    await t.stop();
  }
}

const t = await startTestServer('bench-memory-many', { PORTHOLE_WARM_POOL: '0', PORTHOLE_MAX_SESSIONS: String(sessions), PORTHOLE_LOG_LEVEL: 'info' });
try {
  await settle();
  const before = await meminfo('MemAvailable');
  const total = await meminfo('MemTotal');
  const live: { sandboxId: string }[] = [];
  const marks = new Set([Math.round(sessions / 3), Math.round((2 * sessions) / 3), sessions]);
  for (let i = 1; i <= sessions; i++) {
    live.push(await liveSession(t));
    process.stderr.write(`session ${i}/${sessions} live\n`);
    if (!marks.has(i)) continue;
    await settle();
    const available = await meminfo('MemAvailable');
    let pss = 0;
    for (const s of live) pss += (await sandboxPss(t, s.sandboxId)).bytes;
    rows.push(
      `${String(i).padStart(3)} sessions live: MemAvailable −${((before - available) / MiB).toFixed(0).padStart(6)} MiB (${((before - available) / i / MiB).toFixed(0)} MiB each), PSS sum ${(pss / MiB).toFixed(0)} MiB (${(pss / i / MiB).toFixed(0)} MiB each)`,
    );
    if (i === sessions) {
      const perSession = (before - available) / i;
      const hostUses = total - before;
      const fit = Math.floor((24 * 1024 * MiB - hostUses) / perSession);
      rows.push(
        `24 GiB holds about ${fit} sessions at ${(perSession / MiB).toFixed(0)} MiB each (this host uses ${(hostUses / MiB).toFixed(0)} MiB without any)`,
      );
    }
  }
} finally {
  await t.stop();
}

console.log(`\nMemory of porthole desktops (${sessions} concurrent sessions)`);
for (const row of rows) console.log(row);
