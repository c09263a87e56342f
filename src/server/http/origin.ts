import type { AddressInfo } from 'node:net';

// Which browser origins may act on porthole (open a viewer WebSocket, change something with the
// dashboard cookie), and the base URL of the links porthole hands out. Never the request's Host
// header: a page on evil.example whose name an attacker rebinds to 127.0.0.1 sends
// `Host: evil.example` and `Origin: http://evil.example` alike (DNS rebinding), so "Origin equals
// Host" proves nothing.

/** What the Origin checks ask; a plain array of origins is one too. */
export interface OriginList {
  includes(origin: string): boolean;
}

/**
 * Whether a browser request's Origin may act on this server. A request with no Origin is not from
 * a browser page (browsers always send it on WebSocket upgrades and on cross-origin fetches and
 * non-GET requests), so cross-site request forgery does not apply to it. `Origin: null` (a
 * sandboxed frame, a file) is never allowed.
 */
export function isOriginAllowed(origin: string | undefined, trusted: OriginList): boolean {
  if (origin === undefined) return true;
  return trusted.includes(origin);
}

const isLoopback = (address: string) => /^127\./.test(address) || address === '::1';
const isAnyAddress = (address: string) => address === '0.0.0.0' || address === '::';

/** `http://<address>:<port>` as a browser spells that origin (brackets for IPv6, no default port). */
function httpOrigin(address: string, port: number): string {
  return new URL(`http://${address.includes(':') ? `[${address}]` : address}:${port}`).origin;
}

/**
 * porthole's own origins and the configured ones. Its own: PORTHOLE_PUBLIC_URL's origin, and the
 * address it listens on — a page can only have that origin if porthole served it — with
 * `http://localhost:<port>` beside a loopback address. Listening on every address (0.0.0.0, ::)
 * trusts the loopback ones only: other names need PORTHOLE_PUBLIC_URL or PORTHOLE_ALLOWED_ORIGINS.
 */
export class TrustedOrigins implements OriginList {
  readonly #publicUrl: string | null;
  /** PORTHOLE_PUBLIC_URL's origin and PORTHOLE_ALLOWED_ORIGINS (config.allowedOrigins). */
  readonly #configured: readonly string[];
  #listening: { baseUrl: string; origins: ReadonlySet<string> } | null = null;

  constructor(publicUrl: string | null, configured: readonly string[]) {
    this.#publicUrl = publicUrl;
    this.#configured = configured;
  }

  /** Once the server listens (port 0 is only known then). Until then only the configured origins are trusted. */
  listening(address: AddressInfo): void {
    const own = isAnyAddress(address.address) ? ['127.0.0.1', '::1'] : [address.address];
    const origins = new Set(this.#configured);
    for (const at of own) origins.add(httpOrigin(at, address.port));
    if (own.some(isLoopback)) origins.add(httpOrigin('localhost', address.port));
    this.#listening = { baseUrl: this.#publicUrl ?? httpOrigin(own[0]!, address.port), origins };
  }

  /** Where links handed to clients point (viewer URLs, the login link): PORTHOLE_PUBLIC_URL, else the listening address. */
  get baseUrl(): string {
    if (!this.#listening) throw new Error('TrustedOrigins.baseUrl before the server listens');
    return this.#listening.baseUrl;
  }

  includes(origin: string): boolean {
    return this.#listening ? this.#listening.origins.has(origin) : this.#configured.includes(origin);
  }

  /** The origins beside porthole's own that may embed the viewer page (CSP frame-ancestors). */
  get embedders(): readonly string[] {
    return this.#configured;
  }
}
