import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timeoutSignal } from '../timeout-signal.js';
import { writeProbeBundle } from './oci-spec.js';
import { killRunscProcesses, Runsc, type GvisorPlatform } from './runsc.js';

// Whether runsc starts a sandbox on this host, end to end, with the driver's own flags (Runsc's
// globalArgs: --network=none and the rest): for `porthole doctor`, which may not import the driver
// itself (.dependency-cruiser.cjs), only this. One tiny sandbox — a read-only root with /usr, node
// as an unprivileged uid printing the kernel release it sees — in a scratch --root and bundle of
// its own under the temp directory, all removed afterwards, whatever happened.
//
// A platform may not work although its device is there: gVisor's KVM platform on a nested PVM
// /dev/kvm never runs the container and its Sentry spins at 100 % CPU, runsc create waiting for it.
// So every probe has a deadline, and what it started is killed (host processes by SIGKILL, found
// by the bundle on their command lines) and `runsc delete --force`d, whether or not it answered.

export type RunscProbe =
  | {
      readonly outcome: 'ran';
      /** From `runsc create` to the sandbox's process having exited. */
      readonly ms: number;
      /** `runsc create` alone: the Sentry and the gofer up. */
      readonly createMs: number;
      /** The release uname(2) returns inside: gVisor's own (4.4.0 for years), not the host's. */
      readonly kernel: string;
    }
  | { readonly outcome: 'timed out'; readonly afterMs: number; readonly step: string }
  | { readonly outcome: 'failed'; readonly step: string; readonly reason: string };

/** What runs in the probe sandbox: the agent's runtime, which a sandbox needs anyway, asked for the kernel release. */
const probeArgs = ['/usr/bin/node', '-e', "process.stdout.write(require('node:os').release())"];

/** Leftover processes get this long to die after SIGKILL. */
const killTimeoutMs = 5_000;

/**
 * Starts one probe sandbox on `platform` as `uid` and waits up to `timeoutMs` for its process to
 * exit. Never throws for what runsc does (a failure or a timeout is the result), only when the
 * cleanup itself fails, which leaves something running that the caller must name.
 */
export async function probeRunsc(options: { platform: GvisorPlatform; uid: number; timeoutMs: number; binary?: string }): Promise<RunscProbe> {
  const scratch = await mkdtemp(join(tmpdir(), 'porthole-runsc-probe-'));
  const bundle = join(scratch, 'bundle');
  const root = join(scratch, 'root');
  const output = join(scratch, 'output');
  const id = `porthole-probe-${randomBytes(4).toString('hex')}`;
  const runsc = new Runsc({ root, platform: options.platform, ...(options.binary ? { binary: options.binary } : {}) });
  const deadline = timeoutSignal(options.timeoutMs);
  let step = 'bundle';
  const started = performance.now();
  try {
    await mkdir(root, { mode: 0o700 });
    await mkdir(bundle, { mode: 0o711 });
    await writeProbeBundle(bundle, { uid: options.uid, args: probeArgs });
    step = 'runsc create';
    await runsc.create(id, bundle, join(scratch, 'sentry.pid'), output, deadline);
    const createMs = performance.now() - started;
    step = 'runsc start';
    await runsc.start(id, deadline);
    step = 'runsc wait';
    const status = await runsc.wait(id, deadline);
    const ms = performance.now() - started;
    const printed = (await readFile(output, 'utf8')).trim();
    if (status !== 0)
      return { outcome: 'failed', step: 'node', reason: `exited with ${describeWaitStatus(status)}${printed ? `: ${printed.slice(-300)}` : ''}` };
    if (!printed) return { outcome: 'failed', step: 'node', reason: 'printed no kernel release' };
    return { outcome: 'ran', ms, createMs, kernel: printed };
  } catch (error) {
    if (deadline.aborted) return { outcome: 'timed out', afterMs: options.timeoutMs, step };
    return { outcome: 'failed', step, reason: error instanceof Error ? error.message : String(error) };
  } finally {
    // Processes first: a sandbox that never came up does not answer `runsc delete` (it would wait
    // its whole timeout), and once its processes are gone, delete only removes the state.
    await killRunscProcesses(bundle, killTimeoutMs);
    await runsc.deleteForce(id).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  }
}

/** A wait(2) status as runsc wait reports it: `exit 1`, `signal 9`. */
function describeWaitStatus(status: number): string {
  return (status & 0x7f) === 0 ? `exit ${status >> 8}` : `signal ${status & 0x7f}`;
}
