import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import type { Driver, Endpoint } from '../../drivers/driver.js';
import { connectEndpoint, fetchAgentHealth } from '../../drivers/endpoint-probes.js';
import { RfbClient, RfbError, socketTransport, webSocketTransport } from '../../drivers/rfb-client.js';
import type { AgentHealth } from '../../protocol/agent.js';
import type { DiagnosisHop, HopReport, SessionDiagnosis } from '../../protocol/diagnosis.js';
import { AppError, isErrorCode, type ErrorCode } from '../../protocol/errors.js';
import type { SandboxId, SessionId } from '../../protocol/ids.js';
import { isTerminal, type Session } from '../../protocol/session.js';
import { version } from '../../protocol/version.js';
import type { NodeFence, NodeRecord, Store } from '../../store/store.js';
import type { TicketSigner } from '../tickets.js';

// Per-hop diagnosis of one session: the store's record, the node (host) it is placed on, the
// driver's sandbox, the agent's health, the VNC server, and a real WebSocket round trip through
// this server's own relay — walked in that order, because each hop only means something when the
// ones before it answer. The first failure stops the walk (later hops are `skipped`), so the answer
// names one hop and one cause instead of a cascade: "ECONNREFUSED on …/sbx_…/sockets/vnc.sock",
// not five red lines. (On a `porthole server` the walk is cluster-diagnosis.ts's, from the same parts.)
//
// The vnc and relay hops speak RFB through the one client (src/drivers/rfb-client.ts) and do not
// stop at the 12-byte banner: they go on through the security handshake (type None) and close once
// the server has said "OK". TigerVNC counts a connection that leaves after the banner as a failed
// login; after 5 of them (BlacklistThreshold) it refuses every client on that socket for 10 s and
// more, real viewers included, answering "RFB 003.003" and "Too many security failures". The
// banner-only probes elsewhere (the boot's readiness step, the relay's check of a silent VNC
// connection) are why sandboxes run Xvnc with -UseBlacklist=0; a diagnosis must not cause what it
// looks for even where that flag is missing.
//
// It reads and probes; it never changes a session. The relay hop connects with a probe ticket
// (`tickets.issueProbe`): the relay pipes it exactly like a viewer's but does not count it as one
// (`isProbe` in relay.ts), so it does not move the session to authenticating, add viewer.* events
// to the timeline or restart the idle clock.

/** The node this process is (all-in-one, `porthole node`): its id and generation, and whether it fenced itself. */
export interface DiagnosingNode {
  fence(): NodeFence;
  /** Why it is fenced (a sentence); null while in good standing. */
  readonly fencedBecause: string | null;
}

export interface SessionDiagnosisOptions {
  store: Store;
  driver: Driver;
  /** The node this process is: the node hop reports it (NodeMembership). */
  node: DiagnosingNode;
  /** Signs the viewer ticket the relay hop connects with. */
  tickets: TicketSigner;
  logger?: Logger;
  /** Time limit of each probing hop (agent, vnc, relay). A hop that does not answer in time fails with ETIMEDOUT. */
  hopTimeoutMs?: number;
}

export interface DiagnoseContext {
  /**
   * Where this server's own HTTP listener is reached from inside (http://127.0.0.1:8480), for the
   * relay hop. Not the public URL: that one may be a proxy in front, which this process need not
   * be able to reach. The route uses the local address the request arrived on (`serverUrlOf`).
   * Null on a node asked over the internal hop: a node's port takes no viewers, and the server that
   * asked walks the relay hop through its own edge relay (src/server/cluster/cluster-diagnosis.ts).
   */
  serverUrl: string | null;
}

/** The relay hop's cause on a node asked by a server: that server walks it. */
export const relayWalkedByServer = 'not checked here: the server that asked walks the relay hop through its edge relay';

/**
 * Walks the hops of one session. Throws SESSION_NOT_FOUND for an unknown id; every other failure
 * (the store included) is a hop of the answer, never an exception.
 */
export type DiagnoseSession = (id: SessionId, context: DiagnoseContext) => Promise<SessionDiagnosis>;

const defaultHopTimeoutMs = 3_000;
const maxRefusalBodyBytes = 4096;
/** After the handshake the relay hop closes with 1000 and waits this long for the close handshake. */
const closeWaitMs = 1_000;

/** A hop that answered wrongly: its code and one sentence of cause. */
export class HopFailure extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'HopFailure';
  }
}

export interface HopOutcome {
  cause: string;
  details?: Record<string, unknown>;
}

/** The URL of the listener a request arrived on: the server itself, seen from this host. */
export function serverUrlOf(socket: { localAddress?: string | undefined; localPort?: number | undefined }): string {
  let address = socket.localAddress ?? '127.0.0.1';
  if (address.startsWith('::ffff:') && address.includes('.')) address = address.slice('::ffff:'.length);
  const host = address.includes(':') ? `[${address}]` : address;
  return `http://${host}:${socket.localPort ?? 0}`;
}

/**
 * One walk of the hops: each hop ok, failed, or skipped once an earlier one failed (or the session
 * is over). Shared by this process's own diagnosis and a server's (cluster-diagnosis.ts), so both
 * answer in the same shape and the first failure is found the same way.
 */
export class DiagnosisWalk {
  readonly hops: HopReport[] = [];
  readonly at = new Date().toISOString();
  readonly #started = performance.now();
  /** Set once the walk stops: why the remaining hops are not walked. */
  stopped: string | null = null;

  constructor(
    readonly id: SessionId,
    readonly log?: Logger,
  ) {}

  /** Walks `hop` unless the walk stopped; a failure stops it. */
  async walk(hop: DiagnosisHop, work: () => Promise<HopOutcome>): Promise<void> {
    if (this.stopped !== null) return this.skip(hop, this.stopped);
    const started = performance.now();
    try {
      const outcome = await work();
      this.hops.push({ hop, result: 'ok', ms: elapsed(started), cause: outcome.cause, code: null, details: outcome.details ?? {} });
    } catch (error) {
      if (!(error instanceof HopFailure)) this.log?.warn({ err: error, sessionId: this.id, hop }, 'diagnosis: hop threw');
      this.fail(hop, asHopFailure(error), elapsed(started));
    }
  }

  skip(hop: DiagnosisHop, cause: string): void {
    this.hops.push({ hop, result: 'skipped', ms: 0, cause, code: null, details: {} });
  }

  fail(hop: DiagnosisHop, failure: HopFailure, ms: number): void {
    this.hops.push({ hop, result: 'failed', ms, cause: failure.message, code: failure.code, details: failure.details });
    this.stopped = `not checked: the ${hop} hop failed`;
  }

  /**
   * A hop another process walked (a node's answer), as it reported it. A failure stops this walk
   * too, and so does a hop it skipped (the session ended meanwhile), for the same reason.
   */
  adopt(report: HopReport): void {
    this.hops.push(report);
    if (this.stopped !== null) return;
    if (report.result === 'failed') this.stopped = `not checked: the ${report.hop} hop failed`;
    else if (report.result === 'skipped') this.stopped = report.cause;
  }

  /**
   * The store hop: the session's record. Outside `walk`: an unknown id is the caller's mistake
   * (SESSION_NOT_FOUND, thrown), not a hop that failed. Null when the store did not answer.
   */
  async readRecord(store: Store): Promise<Session | null> {
    const started = performance.now();
    let session: Session | null;
    try {
      session = await store.getSession(this.id);
    } catch (error) {
      const failure = asHopFailure(error, 'STORE_UNAVAILABLE');
      this.fail('store', new HopFailure(failure.code, `the store does not answer: ${failure.message}`, failure.details), elapsed(started));
      return null;
    }
    if (session === null) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: this.id } });
    this.hops.push({ hop: 'store', result: 'ok', ms: elapsed(started), cause: describeRecord(session), code: null, details: recordDetails(session) });
    return session;
  }

  /** The answer: every hop walked so far, the first failure, and the session's egress. */
  async result(store: Store, session: Session | null): Promise<SessionDiagnosis> {
    const failed = this.hops.find((h) => h.result === 'failed');
    const diagnosis: SessionDiagnosis = {
      sessionId: this.id,
      state: session?.state ?? null,
      serverVersion: version,
      at: this.at,
      ms: elapsed(this.#started),
      hops: this.hops,
      firstFailure: failed ? { hop: failed.hop, code: failed.code ?? 'INTERNAL', cause: failed.cause } : null,
      egress: session ? await egressSummary(store, this.id).catch(() => ({ allowed: 0, refused: [] })) : { allowed: 0, refused: [] },
    };
    this.log?.info({ sessionId: this.id, state: diagnosis.state, ms: diagnosis.ms, firstFailure: diagnosis.firstFailure }, 'session diagnosed');
    return diagnosis;
  }
}

/** Why the hops after the node are not walked for this session, or null when they are. */
export function stopAfterRecord(session: Session): string | null {
  if (isTerminal(session.state)) return `session is ${session.state}${session.reason ? ` (${session.reason})` : ''}`;
  if (session.sandboxId === null && session.state === 'starting') return 'not checked: the session is starting and has no sandbox yet';
  return null;
}

/** Why the relay hop is not walked for a session whose earlier hops answered, or null. */
export function relayNotYet(session: Session | null): string | null {
  return session?.state === 'starting' ? 'not checked: the relay admits viewers once the session is ready (it is starting)' : null;
}

/** "node-a (http://10.0.0.5:8481)", or the id alone for an all-in-one. */
export function hostName(node: { id: string; url: string | null }): string {
  return node.url ? `${node.id} (${node.url})` : node.id;
}

/** "heartbeat 0.8 s ago, lease 15 s". */
function heartbeatText(record: NodeRecord): string {
  return `heartbeat ${formatSeconds(record.heartbeatAgeMs)} ago, lease ${formatSeconds(record.leaseMs)}`;
}

/** What the node hop reads of the catalog's record: for scripts. */
export function nodeDetails(record: NodeRecord): Record<string, unknown> {
  return {
    nodeId: record.id,
    url: record.url,
    state: record.state,
    generation: record.generation,
    heartbeatAgeMs: record.heartbeatAgeMs,
    leaseMs: record.leaseMs,
    note: record.note,
  };
}

/**
 * The catalog's word on the host a session is placed on (`placed`: its id and generation then):
 * NODE_LOST when it is missing, dead, or on a later generation (the desktops of the session's
 * generation are gone: it fenced itself or was declared lost); NODE_UNREACHABLE when it has not
 * beaten for longer than its lease and the reaper has not declared it lost yet. Null when the
 * catalog has it alive.
 */
export function nodeStanding(placed: NodeFence, record: NodeRecord | null): HopFailure | null {
  if (record === null) {
    return new HopFailure('NODE_LOST', `the host ${placed.nodeId} the session was placed on is not in the catalog`, { nodeId: placed.nodeId });
  }
  const details = { ...nodeDetails(record), placedGeneration: placed.generation };
  if (record.state === 'dead') {
    return new HopFailure(
      'NODE_LOST',
      `the host ${hostName(record)} is dead: no heartbeat for ${formatSeconds(record.heartbeatAgeMs)}, past its ${formatSeconds(record.leaseMs)} lease${record.note ? ` (${record.note})` : ''}`,
      details,
    );
  }
  if (record.generation !== placed.generation) {
    return new HopFailure(
      'NODE_LOST',
      `the session was placed on generation ${placed.generation} of the host ${hostName(record)}, which is now generation ${record.generation}: that generation's desktops are gone (the host fenced itself or was declared lost)`,
      details,
    );
  }
  if (record.heartbeatAgeMs > record.leaseMs) {
    return new HopFailure(
      'NODE_UNREACHABLE',
      `the host ${hostName(record)} has sent no heartbeat for ${formatSeconds(record.heartbeatAgeMs)}, past its ${formatSeconds(record.leaseMs)} lease; the reaper has not declared it lost yet`,
      details,
    );
  }
  return null;
}

/** The node hop's ok sentence for a host the catalog has alive. */
export function describeNode(record: NodeRecord, self: boolean): string {
  return `${hostName(record)}${self ? ' (this process)' : ''}, generation ${record.generation}, ${record.state}, ${heartbeatText(record)}`;
}

export function createSessionDiagnosis(options: SessionDiagnosisOptions): DiagnoseSession {
  const { store, driver, tickets, node: self } = options;
  const timeoutMs = options.hopTimeoutMs ?? defaultHopTimeoutMs;
  const log = options.logger?.child({ component: 'diagnosis' });

  return async function diagnose(id, context) {
    const w = new DiagnosisWalk(id, log);

    // 1. store.
    const session = await w.readRecord(store);

    // 2. node: this process, when the session is placed on it under the generation it holds. Walked
    // for a session that is over too: a lost host is how such a session ended.
    await w.walk('node', () => localNodeHop(store, self, session!));
    if (session !== null && w.stopped === null) w.stopped = stopAfterRecord(session);

    // 3. driver: does the sandbox run?
    let endpoints: { agent: Endpoint; vnc: Endpoint } | null = null;
    const sandboxId = (session?.sandboxId ?? null) as SandboxId | null;
    await w.walk('driver', async () => {
      if (sandboxId === null) throw new HopFailure('SANDBOX_UNREACHABLE', `the session is ${session?.state} but has no sandbox recorded`);
      const info = await driver.inspect(sandboxId);
      if (info === null) {
        throw new HopFailure('SANDBOX_UNREACHABLE', `sandbox ${sandboxId} is missing: the ${driver.name} driver has no such sandbox`, {
          sandboxId,
          status: 'missing',
        });
      }
      const details = { sandboxId, driver: driver.name, status: info.status, startedAt: info.startedAt, exit: info.exit };
      if (info.status === 'exited') {
        // "signal SIGKILL" (the whole sandbox) reads "with …"; "agent exited: signal SIGKILL" (the
        // agent alone: the sandbox counts as exited with it) goes in parentheses.
        const how = info.exit
          ? info.exit.startsWith('agent ')
            ? `(${info.exit})`
            : `with ${info.exit}`
          : '(how is unknown: an earlier server process started it)';
        throw new HopFailure('SANDBOX_UNREACHABLE', `sandbox process exited ${how}`, details);
      }
      endpoints = { agent: info.agent, vnc: info.vnc };
      return { cause: `running for ${formatDuration(Date.now() - Date.parse(info.startedAt))} (${driver.name} driver)`, details };
    });

    // 4. agent: answers, runs the server's version, and has its desktop up.
    await w.walk('agent', async () => {
      const endpoint = endpoints!.agent;
      let health: AgentHealth;
      try {
        health = await fetchAgentHealth(endpoint, { timeoutMs });
      } catch (error) {
        throw probeFailure(error, endpoint, sandboxId, timeoutMs);
      }
      const details = { version: health.version, healthy: health.healthy, uptimeMs: health.uptimeMs, processes: health.processes };
      if (health.version !== version) throw new HopFailure('AGENT_VERSION_MISMATCH', `agent version ${health.version} ≠ server ${version}`, details);
      if (!health.healthy) {
        const down = health.processes.filter((p) => !p.running).map((p) => `${p.name} (${p.lastExit ?? 'not started yet'})`);
        // A process that died and came back is often the root cause of the ones still down (the X
        // server killed takes the window manager with it), so it is named too.
        const restarted = restartedProcesses(health.processes.filter((p) => p.running));
        const cause =
          down.length > 0
            ? `agent reports down: ${down.join(', ')}${restarted ? `; restarted: ${restarted}` : ''}`
            : 'agent reports not healthy: every process runs but the VNC socket is not there yet';
        throw new HopFailure('AGENT_UNHEALTHY', cause, details);
      }
      const restarted = restartedProcesses(health.processes);
      return { cause: `healthy, version ${health.version}${restarted ? `; restarted: ${restarted}` : ''}`, details };
    });

    // 5. vnc: the RFB handshake straight on the sandbox's socket.
    await w.walk('vnc', () => vncHandshake(endpoints!.vnc, sandboxId, timeoutMs));

    // 6. relay: the same path a viewer takes, through this server's own WebSocket endpoint.
    if (w.stopped === null) w.stopped = relayNotYet(session) ?? (context.serverUrl === null ? relayWalkedByServer : null);
    await w.walk('relay', () => relayRoundTrip(context.serverUrl!, id, tickets, timeoutMs));

    return w.result(store, session);
  };
}

/**
 * The node hop of a session that is over: nothing of it is left on its host to walk. A session lost
 * with its host fails the hop with NODE_LOST and the catalog's word on that host now; any other
 * ending reports the host as the catalog has it.
 */
export function endedSessionNodeHop(session: Session, placed: NodeFence, record: NodeRecord | null, isSelf: boolean): HopOutcome {
  if (session.reason === 'NODE_LOST') {
    throw (
      nodeStanding(placed, record) ??
      new HopFailure('NODE_LOST', session.detail ?? `the host ${placed.nodeId} was lost`, { nodeId: placed.nodeId, placedGeneration: placed.generation })
    );
  }
  if (record === null) return { cause: `the host ${placed.nodeId} is no longer in the catalog`, details: { nodeId: placed.nodeId } };
  return { cause: describeNode(record, isSelf), details: nodeDetails(record) };
}

/** The node hop of this process's own walk: the session must be placed here, under this generation. */
async function localNodeHop(store: Store, self: DiagnosingNode, session: Session): Promise<HopOutcome> {
  const me = self.fence();
  const placed: NodeFence = session.node ? { nodeId: session.node.id, generation: session.node.generation } : me;
  const isMine = placed.nodeId === me.nodeId;
  const record = await store.getNode(placed.nodeId);
  if (isTerminal(session.state)) return endedSessionNodeHop(session, placed, record, isMine);
  const standing = nodeStanding(placed, record);
  if (standing) throw standing;
  const host = record!;
  if (!isMine) {
    // Another host's session (all-in-ones sharing one PostgreSQL): its sandbox is not here to walk.
    throw new HopFailure('NODE_UNREACHABLE', `the session runs on the host ${hostName(host)}, not on this one (${me.nodeId}): ask a server that reaches it`, {
      ...nodeDetails(host),
      self: me.nodeId,
    });
  }
  if (self.fencedBecause !== null) {
    throw new HopFailure('NODE_FENCED', `this host (${me.nodeId}) fenced itself and ended its desktops: ${self.fencedBecause}`, {
      ...nodeDetails(host),
      fenced: self.fencedBecause,
    });
  }
  // The catalog has the placement's generation (nodeStanding); this process holding another is a moment's race.
  if (placed.generation !== me.generation) {
    throw new HopFailure(
      'NODE_LOST',
      `the session was placed on generation ${placed.generation} of this host (${me.nodeId}), which now runs generation ${me.generation}`,
      {
        ...nodeDetails(host),
        placedGeneration: placed.generation,
      },
    );
  }
  const cause = describeNode(host, true);
  return { cause: session.node === null ? `${cause}; the session has no host recorded (it predates hosts)` : cause, details: nodeDetails(host) };
}

/** The session's egress events, counted: allowed connections, and refused destinations by host, port and reason. */
export async function egressSummary(store: Store, id: SessionId): Promise<SessionDiagnosis['egress']> {
  let allowed = 0;
  const refused = new Map<string, { host: string; port: number; reason: string; count: number }>();
  for (let after = 0; ; ) {
    const page = await store.listEvents(id, { afterSeq: after, limit: 1_000 });
    for (const event of page) {
      if (event.type !== 'egress.connect' && event.type !== 'egress.request') continue;
      const d = event.details as { host?: unknown; port?: unknown; allowed?: unknown; reason?: unknown };
      if (d.allowed === true) {
        allowed++;
        continue;
      }
      const entry = { host: String(d.host), port: Number(d.port), reason: String(d.reason ?? 'refused') };
      const key = `${entry.host}:${entry.port}:${entry.reason}`;
      refused.set(key, { ...entry, count: (refused.get(key)?.count ?? 0) + 1 });
    }
    if (page.length < 1_000) break;
    after = page.at(-1)!.seq;
  }
  return { allowed, refused: [...refused.values()] };
}

function elapsed(started: number): number {
  return Math.max(0, Math.round(performance.now() - started));
}

function asHopFailure(error: unknown, fallback: ErrorCode = 'INTERNAL'): HopFailure {
  if (error instanceof HopFailure) return error;
  if (error instanceof AppError) {
    const inner = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return new HopFailure(error.code, `${error.code}${inner}`, error.details ?? {});
  }
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return new HopFailure(fallback, errno && !message.includes(errno) ? `${errno} ${message}` : message, errno ? { errno } : {});
}

/** "vnc 1× (last signal SIGKILL)" for each process the agent has had to restart, or '' when none. */
function restartedProcesses(processes: AgentHealth['processes']): string {
  return processes
    .filter((p) => p.restarts > 0)
    .map((p) => `${p.name} ${p.restarts}× (last ${p.lastExit ?? '?'})`)
    .join(', ');
}

function describeRecord(session: Session): string {
  const state = `${session.state}${session.reason ? ` (${session.reason})` : ''}`;
  const sandbox = session.sandboxId ? `sandbox ${session.sandboxId}` : 'no sandbox yet';
  return `${state}, version ${session.version}, ${sandbox}${session.state === 'failed' && session.detail ? `: ${session.detail}` : ''}`;
}

function recordDetails(session: Session): Record<string, unknown> {
  return { state: session.state, version: session.version, sandboxId: session.sandboxId, reason: session.reason, detail: session.detail };
}

/**
 * A sandbox endpoint as causes show it: unix paths from the sandbox's own directory on
 * (`…/sbx_…/run/vnc.sock`), so the answer, which a viewer may read too, does not spell out the
 * host's data directory.
 */
function shortEndpoint(endpoint: Endpoint, sandboxId: string | null): string {
  if (endpoint.kind === 'tcp') return `tcp:${endpoint.host}:${endpoint.port}`;
  const at = sandboxId ? endpoint.path.indexOf(`/${sandboxId}/`) : -1;
  return at >= 0 ? `…${endpoint.path.slice(at)}` : endpoint.path;
}

/** An endpoint probe's AppError('SANDBOX_UNREACHABLE') as one sentence that keeps the errno. */
function probeFailure(error: unknown, endpoint: Endpoint, sandboxId: string | null, timeoutMs: number): HopFailure {
  const where = shortEndpoint(endpoint, sandboxId);
  const d = error instanceof AppError ? (error.details ?? {}) : {};
  const errno = typeof d.code === 'string' ? d.code : ((error as NodeJS.ErrnoException | undefined)?.code ?? null);
  const details: Record<string, unknown> = { endpoint: where, ...(errno ? { errno } : {}), ...(typeof d.syscall === 'string' ? { syscall: d.syscall } : {}) };
  const code: ErrorCode = error instanceof AppError ? error.code : 'SANDBOX_UNREACHABLE';
  let cause: string;
  if (errno === 'ETIMEDOUT') cause = `ETIMEDOUT on ${where}: no answer within ${timeoutMs} ms`;
  else if (errno === 'ENOTSOCK') cause = `ENOTSOCK: ${where} is not a socket`;
  else if (errno === 'EPROTO') cause = `EPROTO on ${where}: not an RFB server (it sent ${JSON.stringify(d.received ?? '')})`;
  else if (errno === 'ECONNRESET' && typeof d.received === 'string') cause = `ECONNRESET on ${where}: closed before the RFB banner`;
  else if (typeof d.status === 'number') cause = `GET /health answered ${d.status} on ${where}`;
  else if (typeof d.reason === 'string') cause = `${d.reason} on ${where}`;
  else if (errno) cause = `${errno} on ${where}`;
  else cause = `${error instanceof Error && error.cause instanceof Error ? error.cause.message : String((error as Error)?.message ?? error)} on ${where}`;
  return new HopFailure(code, cause, details);
}

/**
 * An RFB client's failure as one cause: its sentence, with what a non-RFB server sent and how long
 * a timed-out hop waited.
 */
function rfbCause(error: RfbError, timeoutMs: number): string {
  // Before ServerInit the one EPROTO is a banner that is not RFB's.
  if (error.code === 'EPROTO') return `${error.message} (it sent ${JSON.stringify(error.received)})`;
  if (error.code === 'ETIMEDOUT') return `${error.message} within ${timeoutMs} ms`;
  return error.message;
}

/** The RFB handshake on the sandbox's own socket, as the relay would open it, up to the security result. */
async function vncHandshake(endpoint: Endpoint, sandboxId: string | null, timeoutMs: number): Promise<HopOutcome> {
  const where = shortEndpoint(endpoint, sandboxId);
  const signal = AbortSignal.timeout(timeoutMs);
  let socket: Socket;
  try {
    socket = await connectEndpoint(endpoint, signal);
  } catch (error) {
    throw probeFailure(error, endpoint, sandboxId, timeoutMs);
  }
  const client = new RfbClient(socketTransport(socket), { signal });
  try {
    const result = await client.authenticate();
    return {
      cause: `banner ${result.banner}, security ${result.security} accepted`,
      details: { endpoint: where, banner: result.banner, security: result.security },
    };
  } catch (error) {
    if (!(error instanceof RfbError)) throw error;
    throw new HopFailure('SANDBOX_UNREACHABLE', `${error.code} on ${where}: ${rfbCause(error, timeoutMs)}`, { endpoint: where, errno: error.code });
  } finally {
    client.close();
  }
}

/**
 * A viewer's path: sign a ticket, open `ws://<server>/v1/sessions/:id/vnc`, go through the RFB
 * handshake the relay pipes to the sandbox, close with 1000. The ticket never appears in a cause.
 */
export function relayRoundTrip(serverUrl: string, id: SessionId, tickets: TicketSigner, timeoutMs: number): Promise<HopOutcome> {
  const url = `${serverUrl.replace(/^http/, 'ws').replace(/\/+$/, '')}/v1/sessions/${id}/vnc`;
  // A probe ticket: the relay pipes it like a viewer but does not count it as one.
  const { ticket } = tickets.issueProbe(id);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}?ticket=${encodeURIComponent(ticket)}`, { perMessageDeflate: false, handshakeTimeout: timeoutMs, followRedirects: false });
    let settled = false;
    const timer = setTimeout(() => fail('SANDBOX_UNREACHABLE', `ETIMEDOUT on ${url}: no answer ${client.progress} within ${timeoutMs} ms`), timeoutMs);
    const fail = (code: ErrorCode, cause: string, details: Record<string, unknown> = {}): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(new HopFailure(code, cause.replaceAll(ticket, '…'), { url, ...details }));
    };
    // The relay's refusal, close and errors are reported by the listeners below, registered before
    // the client's: they settle first, and the client's ECONNRESET for the same end comes too late.
    ws.on('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < maxRefusalBodyBytes) body += chunk;
      });
      response.on('error', () => {});
      response.on('end', () => {
        let code: unknown;
        try {
          code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
        } catch {
          code = undefined;
        }
        const status = response.statusCode ?? 0;
        fail(isErrorCode(code) ? code : 'INTERNAL', `the relay refused the upgrade: ${status}${typeof code === 'string' ? ` ${code}` : ''}`, { status });
      });
    });
    ws.on('close', (code, reason) => {
      const text = reason.toString();
      fail(isErrorCode(text) ? text : 'SANDBOX_UNREACHABLE', `the relay closed ${code}${text ? ` ${text}` : ''} ${client.progress}`, {
        closeCode: code,
        closeReason: text,
      });
    });
    ws.on('error', (error: NodeJS.ErrnoException) => {
      fail('INTERNAL', `${error.code ?? error.message} on ${url}`, error.code ? { errno: error.code } : {});
    });
    const client = new RfbClient(webSocketTransport(ws));
    client.authenticate().then(
      (result) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // A clean close, so the relay logs "viewer closed 1000"; bounded, since the answer is in.
        const forced = setTimeout(() => ws.terminate(), closeWaitMs);
        ws.once('close', () => {
          clearTimeout(forced);
          resolve({
            cause: `banner ${result.banner}, security ${result.security} accepted through ${url}`,
            details: { url, banner: result.banner, security: result.security },
          });
        });
        ws.close(1000, 'diagnosis done');
      },
      (error: unknown) => {
        if (error instanceof RfbError) fail('SANDBOX_UNREACHABLE', `${error.code} through the relay: ${rfbCause(error, timeoutMs)}`, { errno: error.code });
        else fail('INTERNAL', String(error));
      },
    );
  });
}

/** "0.8 s", "15 s", "2 min 5 s": a heartbeat's age or a lease. */
export function formatSeconds(ms: number): string {
  if (ms < 10_000) return `${Math.round(ms / 100) / 10} s`;
  return formatDuration(ms);
}

/** "12 s", "3 min 12 s", "2 h 5 min". */
function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
