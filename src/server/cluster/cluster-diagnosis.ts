import type { Logger } from 'pino';
import { sessionDiagnosisSchema, type SessionDiagnosis } from '../../protocol/diagnosis.js';
import { AppError } from '../../protocol/errors.js';
import type { SessionId } from '../../protocol/ids.js';
import { isTerminal, type Session } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import {
  DiagnosisWalk,
  describeNode,
  endedSessionNodeHop,
  HopFailure,
  type HopOutcome,
  hostName,
  nodeDetails,
  nodeStanding,
  relayNotYet,
  relayRoundTrip,
  stopAfterRecord,
  type DiagnoseSession,
} from '../sessions/diagnosis.js';
import type { TicketSigner } from '../tickets.js';
import type { NodeClient } from './node-client.js';

// A `porthole server`'s diagnosis of a session, which runs on some node (docs/diagnosis.md):
// - store: the session's record, read here;
// - node: the host the catalog places it on. Dead, or on a later generation → NODE_LOST (its
//   desktops are gone); no heartbeat for longer than its lease → NODE_UNREACHABLE (the reaper has
//   not fired yet); else the host is asked to walk its own hops (POST /internal/v1/sessions/:id/
//   diagnose), and one that does not answer → NODE_UNREACHABLE with the errno;
// - driver, agent, vnc: the node's own walk, as it answered;
// - relay: walked here, through this server's own edge relay: the browser's path, server → node
//   relay → VNC server. (The node does not walk it: a node's port takes no viewers.)

export interface ClusterDiagnosisOptions {
  store: Store;
  nodes: NodeClient;
  /** Signs the probe ticket of the relay hop (shared with the nodes through the cluster key). */
  tickets: TicketSigner;
  logger: Logger;
  /** Time limit of the relay hop's probe; the node's walk gets two of these and 2 s more. */
  hopTimeoutMs?: number;
}

const defaultHopTimeoutMs = 3_000;

export function createClusterDiagnosis(options: ClusterDiagnosisOptions): DiagnoseSession {
  const { store, nodes, tickets } = options;
  const timeoutMs = options.hopTimeoutMs ?? defaultHopTimeoutMs;
  // The node's walk: its store read, then driver, agent and vnc, each probe bounded by its own 3 s.
  const nodeTimeoutMs = 2 * timeoutMs + 2_000;
  const log = options.logger.child({ component: 'diagnosis' });

  return async (id, context) => {
    const w = new DiagnosisWalk(id, log);
    const session = await w.readRecord(store);

    const node: { answer: SessionDiagnosis | null } = { answer: null };
    await w.walk('node', async () => {
      const walked = await remoteNodeHop(store, nodes, session!, id, nodeTimeoutMs);
      node.answer = walked.answer;
      return walked.outcome;
    });
    if (session !== null && w.stopped === null) w.stopped = stopAfterRecord(session);

    // The node's own hops after its node hop, as it walked them (or skipped, once this walk stopped).
    const remote = node.answer;
    for (const hop of ['driver', 'agent', 'vnc'] as const) {
      const report = remote?.hops.find((h) => h.hop === hop);
      if (w.stopped !== null || !report) w.skip(hop, w.stopped ?? `not checked: the host's answer has no ${hop} hop`);
      else w.adopt(report);
    }

    if (w.stopped === null) w.stopped = relayNotYet(session);
    if (context.serverUrl === null) w.stopped ??= 'not checked: no listener of this server to walk it through';
    await w.walk('relay', async () => {
      const outcome = await relayRoundTrip(context.serverUrl!, id, tickets, timeoutMs);
      return { ...outcome, cause: `${outcome.cause} (edge relay → node relay on ${session?.node?.id ?? 'its host'})` };
    });
    return w.result(store, session);
  };
}

/**
 * The node hop from a server: the catalog's record of the session's host, and for a live session
 * the host's own walk. Throws a HopFailure naming the host.
 */
async function remoteNodeHop(
  store: Store,
  nodes: NodeClient,
  session: Session,
  id: SessionId,
  timeoutMs: number,
): Promise<{ outcome: HopOutcome; answer: SessionDiagnosis | null }> {
  if (session.node === null) {
    if (isTerminal(session.state)) return { outcome: { cause: 'the session was never placed on a host' }, answer: null };
    throw new HopFailure('SANDBOX_UNREACHABLE', `the session is ${session.state} but was never placed on a host`);
  }
  const placed = { nodeId: session.node.id, generation: session.node.generation };
  const record = await store.getNode(placed.nodeId);
  // Over: nothing of it is left on its host to walk.
  if (isTerminal(session.state)) return { outcome: endedSessionNodeHop(session, placed, record, false), answer: null };
  const standing = nodeStanding(placed, record);
  if (standing) throw standing;
  const host = record!;
  const details = nodeDetails(host);

  const started = performance.now();
  let raw: unknown;
  try {
    raw = await nodes.diagnose(host, id, timeoutMs);
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    const d = error.details ?? {};
    const errno = typeof d.cause === 'string' ? d.cause : null;
    if (error.code === 'NODE_UNREACHABLE' && errno !== null) {
      const why = errno === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : errno;
      throw new HopFailure('NODE_UNREACHABLE', `the host ${hostName(host)} does not answer: ${why}`, { ...details, errno });
    }
    // It answered with a refusal: NODE_FENCED (it holds another generation), INTERNAL_AUTH_INVALID (another cluster key)…
    throw new HopFailure(error.code, `the host ${hostName(host)} refused: ${error.code}: ${error.message}`, { ...details, ...d });
  }
  const parsed = sessionDiagnosisSchema.safeParse(raw);
  if (!parsed.success) {
    throw new HopFailure(
      'NODE_UNREACHABLE',
      `the host ${hostName(host)} answered something that is not a diagnosis: ${parsed.error.issues[0]?.message}`,
      details,
    );
  }
  const answer = parsed.data;
  // The host's own word on itself (fenced, or its store does not answer it) is the node hop's failure.
  const own = answer.hops.find((h) => h.hop === 'store' && h.result === 'failed') ?? answer.hops.find((h) => h.hop === 'node' && h.result === 'failed');
  if (own) {
    const what = own.hop === 'store' ? 'cannot read the session record' : 'says';
    throw new HopFailure(own.code ?? 'NODE_UNREACHABLE', `the host ${hostName(host)} ${what}: ${own.cause}`, { ...details, ...own.details });
  }
  const walkMs = Math.round(performance.now() - started);
  return {
    outcome: {
      cause: `${describeNode(host, false)}; its walk answered in ${walkMs} ms (version ${answer.serverVersion})`,
      details: { ...details, version: answer.serverVersion },
    },
    answer,
  };
}
