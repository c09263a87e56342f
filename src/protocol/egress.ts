import { z } from 'zod';

// The egress contract shared by the server's egress proxy (src/server/egress) and the agent's
// forwarder inside the sandbox (src/agent/egress-forwarder.ts): the refusal reasons, the one event
// per connection, and the client half of the CONNECT handshake that both sides speak.

/** Where the agent's forwarder listens inside the sandbox's own network namespace. */
export const egressProxyPort = 3128;

export const egressRefusalReasons = [
  'loopback',
  'unspecified',
  'private',
  'link-local',
  'cgnat',
  'multicast',
  'broadcast',
  'reserved',
  'not-allowed',
  'resolve-failed',
  'invalid-host',
  'invalid-port',
] as const;
export type EgressRefusalReason = (typeof egressRefusalReasons)[number];

/** Response header on every answer the proxy makes itself: `refused; reason=<reason>` or `failed; error=<errno>`. */
export const egressHeader = 'X-Porthole-Egress';

/**
 * One per CONNECT or proxied request, when it ends (a refusal at once). Host and port only: a
 * URL's path and query can carry OAuth codes, so they never appear here.
 */
export const egressEventSchema = z
  .object({
    type: z.enum(['egress.connect', 'egress.request']),
    host: z.string(),
    port: z.number().int(),
    /** The address connected to (or tried); null when refused before resolution, or left to the upstream proxy. */
    address: z.string().nullable(),
    /** The policy's decision. */
    allowed: z.boolean(),
    reason: z.enum(egressRefusalReasons).optional(),
    /** Why an allowed destination was not reached: an errno (ECONNREFUSED, ETIMEDOUT) or `upstream <status>`. */
    error: z.string().optional(),
    /** Bytes from the sandbox towards the destination, and back; bodies and tunnel payload only. */
    bytesUp: z.number().int(),
    bytesDown: z.number().int(),
    durationMs: z.number().int(),
  })
  .strict();
export type EgressEvent = z.infer<typeof egressEventSchema>;

/** `host:port`, with an IPv6 literal in brackets. */
export function authorityOf(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The request head that opens a tunnel to host:port through an HTTP proxy. */
export function connectRequestHead(host: string, port: number, headers: Readonly<Record<string, string>> = {}): string {
  const authority = authorityOf(host, port);
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${extra}\r\n`;
}

/** Longest CONNECT response head read before giving up (node's own header limit). */
export const maxConnectResponseHeadBytes = 16 * 1024;

/**
 * Reads the answer to a CONNECT from the bytes received so far: null while the head is not
 * complete, else its status (0 when the status line is not HTTP) and the head's length, after
 * which the bytes belong to the tunnel.
 */
export function parseConnectResponseHead(data: Uint8Array): { status: number; headLength: number } | null {
  let end = -1;
  for (let i = 0; i + 4 <= data.length; i++) {
    if (data[i] === 13 && data[i + 1] === 10 && data[i + 2] === 13 && data[i + 3] === 10) {
      end = i;
      break;
    }
  }
  if (end < 0) return null;
  const statusLine = new TextDecoder('latin1').decode(data.subarray(0, Math.min(end, 200))).split('\r\n', 1)[0] ?? '';
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  return { status: match ? Number(match[1]) : 0, headLength: end + 4 };
}
