import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runscProcesses } from '../src/drivers/gvisor/runsc.js';
import { sandboxDir } from '../src/drivers/local-layout.js';
import { sandboxProcesses } from '../test/support/sandbox-processes.js';
import type { TestServer } from '../test/support/server.js';
import { until } from '../test/support/until.js';

// What a live desktop costs in memory, as the host sees it: the summed PSS (proportional set size:
// shared pages split among their users) of the sandbox's host processes. For memory.ts and drivers.ts.
//
// Which processes those are depends on the driver. local: the sandbox's own processes (Xvnc,
// Chromium, the agent, …), found by the marker in their environment (test/support/sandbox-processes.ts).
// gvisor: the person's processes exist only inside gVisor's kernel; on the host there are the
// Sentry (that kernel, whose memory holds all of theirs), the gofer and the ptrace stubs, found by
// the sandbox's bundle on their command lines (runscProcesses, src/drivers/gvisor/runsc.ts).

export const MiB = 1024 * 1024;

/** The host pids of a sandbox of this test server, for its driver. */
export async function sandboxHostPids(t: TestServer, sandboxId: string): Promise<number[]> {
  if (t.server.config.driver === 'gvisor') return runscProcesses(join(sandboxDir(t.dataDir, sandboxId), 'bundle'));
  return (await sandboxProcesses(sandboxId)).map((p) => p.pid);
}

/** Summed PSS of every host process of the sandbox, in bytes. */
export async function sandboxPss(t: TestServer, sandboxId: string): Promise<{ bytes: number; processes: number }> {
  let bytes = 0;
  const pids = await sandboxHostPids(t, sandboxId);
  for (const pid of pids) {
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
    bytes += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
  }
  return { bytes, processes: pids.length };
}

/** A demo session whose sign-in page is open in its Chromium (the CLI asked the agent to open it). */
export async function liveSession(t: TestServer): Promise<{ id: string; sandboxId: string }> {
  const session = await t.readySession({ provider: 'demo' });
  await until(
    `the sign-in page opened in ${session.id}`,
    async () => (await t.api.listEvents(session.id)).events.some((e) => e.type === 'login.browser_opened'),
    (opened) => opened,
    60_000,
  );
  return { id: session.id, sandboxId: session.sandboxId! };
}

/** Memory settles a moment after a page opens (Chromium's renderers grow, then idle). */
export const settle = () => new Promise((resolve) => setTimeout(resolve, 3_000));
