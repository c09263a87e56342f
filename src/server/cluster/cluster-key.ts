import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { AppError } from '../../protocol/errors.js';

// PORTHOLE_CLUSTER_KEY: one secret shared by every server and node of a cluster. Each use gets its
// own key derived from it (HKDF-SHA256), so a key of one purpose says nothing about another's:
// viewer tickets (any server issues, the owning node checks again) and the internal hop (a server
// asking a node to boot, release, relay or diagnose a session).

/** How far apart a signed internal request's time and the receiver's clock may be. */
const internalSkewMs = 30_000;
/** The header an internal request carries: `<unix ms>.<hmac base64url>`. */
export const internalAuthHeader = 'x-porthole-internal';

export interface ClusterKey {
  /** The key viewer tickets are signed with on every server and node. */
  readonly ticketKey: Buffer;
  /** The header value for one internal request (method and path, query included, are signed). */
  sign(method: string, path: string): string;
  /** Throws INTERNAL_AUTH_INVALID unless `value` signs this method and path within the allowed skew. */
  verify(value: string | undefined, method: string, path: string): void;
}

function derive(master: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `porthole ${purpose}`, 32));
}

/** `base64`: PORTHOLE_CLUSTER_KEY, 32 bytes. */
export function clusterKeyFrom(master: Buffer, now: () => number = Date.now): ClusterKey {
  const internal = derive(master, 'internal hop');
  const mac = (method: string, path: string, at: string) => createHmac('sha256', internal).update(`${method.toUpperCase()} ${path} ${at}`).digest();
  return {
    ticketKey: derive(master, 'viewer tickets'),
    sign(method, path) {
      const at = String(now());
      return `${at}.${mac(method, path, at).toString('base64url')}`;
    },
    verify(value, method, path) {
      const [at = '', signature = ''] = (value ?? '').split('.');
      const given = Buffer.from(signature, 'base64url');
      const expected = mac(method, path, at);
      const time = Number(at);
      if (!value || !Number.isSafeInteger(time) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new AppError('INTERNAL_AUTH_INVALID');
      }
      if (Math.abs(now() - time) > internalSkewMs) {
        throw new AppError('INTERNAL_AUTH_INVALID', { message: `The internal request's time is more than ${internalSkewMs / 1000} s from this host's clock.` });
      }
    },
  };
}
