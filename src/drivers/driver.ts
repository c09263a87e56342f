import type { SandboxId } from '../protocol/ids.js';

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
}

/** Where the server reaches a sandbox. Nothing backend-specific beyond how to connect. */
export type Endpoint = { readonly kind: 'unix'; readonly path: string } | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export interface SandboxHandle {
  readonly id: SandboxId;
  /** RFB (VNC) server. */
  readonly vnc: Endpoint;
  /** The agent's HTTP endpoint (GET /health). */
  readonly agent: Endpoint;
}

export interface SandboxInfo extends SandboxHandle {
  /** `running` while the sandbox's processes live; `exited` once they are gone but not yet destroyed. */
  readonly status: 'running' | 'exited';
  readonly startedAt: string;
  /** For `exited`: how it ended, e.g. "signal SIGKILL" or "exit 1", when known. */
  readonly exit: string | null;
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
  /** Idempotent: destroying an unknown or already destroyed sandbox succeeds. Leaves no process, socket or directory. */
  destroy(id: SandboxId): Promise<void>;
  /** null when the driver has no such sandbox. Never throws for an unknown id. */
  inspect(id: SandboxId): Promise<SandboxInfo | null>;
  /** Every sandbox this driver has (running or exited but not destroyed), for the reconciler. */
  list(): Promise<SandboxInfo[]>;
  /** Release driver-wide resources; does not destroy sandboxes. Idempotent. */
  close(): Promise<void>;
}
