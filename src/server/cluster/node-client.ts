import { AppError, isErrorCode } from '../../protocol/errors.js';
import type { SessionId } from '../../protocol/ids.js';
import type { NodeRecord } from '../../store/store.js';
import type { CreateRunBody, Run } from '../../protocol/runs.js';
import type { RunId } from '../../protocol/ids.js';
import { internalAuthHeader, type ClusterKey } from './cluster-key.js';

// The server side of the internal hop: a server asks the node that owns a session to boot it,
// release it, or walk its hops. Every request is signed with the cluster key (cluster-key.ts);
// the node checks that, and that the session is placed on it under its current generation.

/** How long a node may take to answer an internal request (booting is accepted, not awaited). */
const internalTimeoutMs = 5_000;

export interface NodeClient {
  boot(node: NodeRecord, sessionId: SessionId): Promise<void>;
  release(node: NodeRecord, sessionId: SessionId): Promise<void>;
  /** The node's own walk of the driver, agent, vnc and relay hops: its JSON answer. */
  diagnose(node: NodeRecord, sessionId: SessionId, timeoutMs: number): Promise<unknown>;
  /** Starts a run on the node (its RunManager); the run as it was stored. */
  createRun(node: NodeRecord, body: CreateRunBody, apiKeyId: string | null): Promise<Run>;
  /** Stops a run the node holds; RUN_ELSEWHERE when it does not hold it. */
  cancelRun(node: NodeRecord, id: RunId): Promise<Run>;
  /** The node relay's WebSocket URL for a session, and the header that signs opening it. */
  relay(node: NodeRecord, sessionId: SessionId): { url: string; headers: Record<string, string> };
}

function baseOf(node: NodeRecord): string {
  if (!node.url) throw new AppError('NODE_UNREACHABLE', { message: `The node ${node.id} has no URL servers can reach it at (PORTHOLE_NODE_URL).` });
  return node.url;
}

export function createNodeClient(key: ClusterKey, fetchImpl: typeof fetch = globalThis.fetch): NodeClient {
  async function post(node: NodeRecord, path: string, timeoutMs = internalTimeoutMs, payload?: unknown): Promise<unknown> {
    const url = `${baseOf(node)}${path}`;
    let response: Response;
    try {
      response = await fetchImpl(url, {
        method: 'POST',
        headers: { [internalAuthHeader]: key.sign('POST', path), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(payload === undefined ? {} : { body: JSON.stringify(payload) }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      throw new AppError('NODE_UNREACHABLE', {
        message: `The host ${node.id} (${node.url}) does not answer: ${cause}.`,
        details: { nodeId: node.id, url: node.url, cause },
        cause: error,
      });
    }
    const body = (await response.json().catch(() => null)) as { error?: { code?: unknown; message?: string; details?: Record<string, unknown> } } | null;
    if (response.ok) return body;
    const code = body?.error?.code;
    throw new AppError(isErrorCode(code) ? code : 'NODE_UNREACHABLE', {
      message: body?.error?.message ?? `The host ${node.id} answered ${response.status}.`,
      details: { nodeId: node.id, status: response.status, ...(body?.error?.details ?? {}) },
    });
  }

  return {
    async boot(node, sessionId) {
      await post(node, `/internal/v1/sessions/${sessionId}/boot`);
    },
    async release(node, sessionId) {
      await post(node, `/internal/v1/sessions/${sessionId}/release`);
    },
    diagnose(node, sessionId, timeoutMs) {
      return post(node, `/internal/v1/sessions/${sessionId}/diagnose`, timeoutMs);
    },
    async createRun(node, body, apiKeyId) {
      return (await post(node, '/internal/v1/runs', internalTimeoutMs, { body, apiKeyId })) as Run;
    },
    async cancelRun(node, id) {
      // A cancel waits for the run's sandbox to go.
      return (await post(node, `/internal/v1/runs/${id}/cancel`, 30_000)) as Run;
    },
    relay(node, sessionId) {
      const path = `/internal/v1/sessions/${sessionId}/vnc`;
      return { url: `${baseOf(node).replace(/^http/, 'ws')}${path}`, headers: { [internalAuthHeader]: key.sign('GET', path) } };
    },
  };
}
