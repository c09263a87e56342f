import type { SandboxId } from '../protocol/ids.js';
import type { SocketPin } from './pinned-socket.js';

// A driver knows how to run a sandbox, never whether one should run: it never touches the store.

export interface SandboxSpec {
  readonly id: SandboxId;
  /** Desktop size in pixels. */
  readonly width: number;
  readonly height: number;
  /** The page the sandbox's Chromium opens first. */
  readonly startUrl: string;
  /** The sandbox's Chromium resolves no host name but loopback. */
  readonly loopbackOnly?: boolean;
  /** The sandbox ends itself when the server has not been heard from for this long (see AgentConfig.leaseMs). */
  readonly leaseMs?: number;
  /**
   * Services on the host's loopback the sandbox reaches at the same address on its own loopback
   * (the demo issuer; an operator's PORTHOLE_EGRESS_LOOPBACK): tunnelled through the egress proxy,
   * whose policy allows exactly these host:port pairs.
   */
  readonly tunnels?: readonly { readonly host: string; readonly port: number }[];
  /** false: no desktop (a run's sandbox; AgentConfig.desktop). Default true. */
  readonly desktop?: boolean;
}

/**
 * Where the server reaches a sandbox. Nothing backend-specific beyond how to connect. A unix
 * endpoint with a `pin` is a sandbox's own socket: `path` is where the server pins it (a directory
 * only porthole writes) and connects; see pinned-socket.ts.
 */
export type Endpoint =
  | { readonly kind: 'unix'; readonly path: string; readonly pin?: SocketPin }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export interface SandboxHandle {
  readonly id: SandboxId;
  /** RFB (VNC) server. */
  readonly vnc: Endpoint;
  /** The agent's HTTP endpoint (GET /health). */
  readonly agent: Endpoint;
  /**
   * Where the server listens for this sandbox, when the sandbox has no network of its own: the
   * egress proxy (its only way out) and the agent channel (its only way to the server). Paths in a
   * directory only porthole writes; the server (re)binds them after create and after adoption.
   */
  readonly host: { readonly proxySocket: string; readonly serverSocket: string } | null;
}

export interface SandboxInfo extends SandboxHandle {
  /** `running` while the sandbox's processes live; `exited` once they are gone but not yet destroyed. */
  readonly status: 'running' | 'exited';
  readonly startedAt: string;
  /** For `exited`: how it ended, e.g. "signal SIGKILL" or "exit 1", when known. */
  readonly exit: string | null;
  /**
   * A resource limit the sandbox reached, as a sentence ("the desktop ran out of memory (1 GiB)"):
   * the kernel killed or refused something in it, so it is no longer whole. null while none was.
   */
  readonly limitReached?: string | null;
}

export interface Driver {
  readonly name: string;
  /**
   * Starts a sandbox and returns once its processes are launched (not once they answer: readiness
   * is the server's job). Not idempotent: a second create with the same id throws. On any failure,
   * everything acquired so far is released before it throws AppError('SANDBOX_START_FAILED').
   * Aborting `signal` stops the start and releases everything.
   */
  create(spec: SandboxSpec, options?: { signal?: AbortSignal }): Promise<SandboxHandle>;
  /**
   * Idempotent: destroying an unknown or already destroyed sandbox succeeds. Leaves no process,
   * socket or directory. The agent gets a moment to stop the desktop first, unless `now`: then
   * everything is killed at once (a fence: the node no longer owns the sandbox, which may hold secrets).
   */
  destroy(id: SandboxId, options?: { now?: boolean }): Promise<void>;
  /** null when the driver has no such sandbox. Never throws for an unknown id. */
  inspect(id: SandboxId): Promise<SandboxInfo | null>;
  /** Every sandbox this driver has (running or exited but not destroyed), for the reconciler. */
  list(): Promise<SandboxInfo[]>;
  /** Release driver-wide resources; does not destroy sandboxes. Idempotent. */
  close(): Promise<void>;
}
