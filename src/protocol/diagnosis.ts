import { z } from 'zod';
import { errorCodes, type ErrorCode } from './errors.js';
import { sessionStates } from './session-states.js';

// What `GET /v1/sessions/:id/diagnosis` answers: the hops between a viewer and a session's desktop,
// walked in order, each with its result, its duration and one sentence of cause. Shared by the
// server, the CLI and (later) the viewer, so that every surface shows the same cause for a hop.

/**
 * The hops, in the order they are walked: each one depends on the ones before it. `node` is the
 * porthole node (host) the session is placed on: on an all-in-one or a node, the process itself;
 * on a `porthole server`, the host the catalog names, asked over the internal hop.
 */
export const diagnosisHops = ['store', 'node', 'driver', 'agent', 'vnc', 'relay'] as const;
export type DiagnosisHop = (typeof diagnosisHops)[number];

/** `skipped`: not walked, because an earlier hop failed or the session is over (the cause says which). */
export const hopResults = ['ok', 'failed', 'skipped'] as const;
export type HopResult = (typeof hopResults)[number];

export const diagnosisHopLabels: Record<DiagnosisHop, string> = {
  store: 'the session record',
  node: 'the host (porthole node)',
  driver: 'the sandbox',
  agent: 'the sandbox agent',
  vnc: 'the desktop’s VNC server',
  relay: 'the WebSocket relay',
};

const errorCode = z.enum(errorCodes as [ErrorCode, ...ErrorCode[]]);

export const hopReportSchema = z.object({
  hop: z.enum(diagnosisHops),
  result: z.enum(hopResults),
  /** Time spent on this hop; 0 when skipped. */
  ms: z.number().int().min(0),
  /** One sentence: what was seen ("healthy, version 0.1.0") or what broke ("ECONNREFUSED on …/run/vnc.sock"). */
  cause: z.string(),
  /** For `failed`: the registry code of the failure. */
  code: errorCode.nullable(),
  /** What the hop read, for scripts (state and version, exit, process list, errno, close code…). */
  details: z.record(z.string(), z.unknown()),
});
export type HopReport = z.infer<typeof hopReportSchema>;

export const sessionDiagnosisSchema = z.object({
  sessionId: z.string(),
  /** The session's state as the store has it; null when the store did not answer. */
  state: z.enum(sessionStates).nullable(),
  serverVersion: z.string(),
  /** When the walk started. */
  at: z.string(),
  /** The whole walk. */
  ms: z.number().int().min(0),
  /** Every hop of diagnosisHops, in that order. */
  hops: z.array(hopReportSchema),
  firstFailure: z
    .object({
      hop: z.enum(diagnosisHops),
      code: errorCode,
      cause: z.string(),
    })
    .nullable(),
  /**
   * The sandbox's network use so far, from its egress events: how many connections the egress
   * policy allowed, and each destination it refused (with why and how often). A refused sign-in
   * host is the usual cause of a login page that never loads.
   */
  egress: z
    .object({
      allowed: z.number().int(),
      refused: z.array(z.object({ host: z.string(), port: z.number().int(), reason: z.string(), count: z.number().int() })),
    })
    .default({ allowed: 0, refused: [] }),
});
export type SessionDiagnosis = z.infer<typeof sessionDiagnosisSchema>;
