import { lookup as systemLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { EgressRefusalReason } from '../../protocol/egress.js';

// Where a sandbox may connect. The name is resolved here, every address it resolves to is judged,
// and the proxy connects to a checked address, never to the name again: a name that answers a
// public address to the check and a private one to the connect (DNS rebinding) gains nothing.
// Ranges come from ipaddr.js; nothing here writes a mask by hand.

export interface LoopbackException {
  readonly host: string;
  readonly port: number;
}

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** Resolves a host name to all its addresses; throws (with an errno `code`) when it cannot. */
export type EgressLookup = (host: string) => Promise<readonly ResolvedAddress[]>;

export interface EgressPolicyOptions {
  /**
   * When non-empty, only destinations matching an entry pass. Entries: exact host names,
   * `*.suffix` (any name below suffix, not suffix itself), IP literals, CIDRs. An IP or CIDR entry
   * also admits private and reserved addresses in its range; loopback and unspecified never pass.
   */
  readonly allow?: readonly string[];
  /** Exact host:port pairs on loopback that pass (porthole's own demo issuer): the only loopback destinations. */
  readonly loopbackExceptions?: readonly LoopbackException[];
  /** Name resolution; the system's (`dns.lookup`, all addresses) unless given. */
  readonly lookup?: EgressLookup;
}

export type EgressDecision =
  /** Connect to `address` (or the next of `addresses`, all checked, IPv4 first) — never to the name. */
  | { readonly allowed: true; readonly address: string; readonly family: 4 | 6; readonly addresses: readonly ResolvedAddress[] }
  /** Only with an upstream proxy, for a name porthole cannot resolve that an allow-list name entry admits: the upstream resolves it. */
  | { readonly allowed: true; readonly address: null; readonly family: null; readonly addresses: readonly [] }
  | { readonly allowed: false; readonly reason: EgressRefusalReason; readonly address?: string; readonly detail?: string };

export interface EgressPolicy {
  /**
   * Decides host:port. `host` may be a name, an IP literal, or an IPv6 literal in brackets.
   * `viaUpstream`: an upstream proxy will carry the connection, so a name that does not resolve
   * here may still pass on the allow list's name entries. Never throws.
   */
  decide(host: string, port: number, options?: { viaUpstream?: boolean }): Promise<EgressDecision>;
}

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type AllowEntry = { kind: 'name'; name: string } | { kind: 'suffix'; suffix: string } | { kind: 'range'; range: [Address, number] };

const maxHostLength = 253;
const hostNamePattern = /^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
// IANA's global unicast space: any IPv6 address outside it is not the internet, whatever
// range() (which knows only the special-purpose registry) says.
const ipv6GlobalUnicast = ipaddr.IPv6.parseCIDR('2000::/3');

/** Lower case, without brackets or one trailing dot. */
function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.') && !isIP(h)) h = h.slice(0, -1);
  return h;
}

/** An IP literal (no zone id) as ipaddr.js sees it, IPv4-mapped IPv6 unwrapped; null for anything else. */
function parseIpLiteral(text: string): Address | null {
  if (isIP(text) === 0 || text.includes('%')) return null;
  return ipaddr.process(text);
}

function parseAllowEntry(raw: string): AllowEntry | string {
  const entry = normalizeHost(raw);
  if (entry.startsWith('*.')) {
    const suffix = entry.slice(2);
    return hostNamePattern.test(suffix) && suffix.length <= maxHostLength ? { kind: 'suffix', suffix } : `${raw}: not a *.suffix wildcard of a host name`;
  }
  if (entry.includes('/')) {
    const [address = '', bits = ''] = entry.split('/');
    if (isIP(address) === 0 || !/^\d{1,3}$/.test(bits) || !ipaddr.isValidCIDR(entry)) return `${raw}: not a CIDR (address/prefix length)`;
    const [parsed, prefix] = ipaddr.parseCIDR(entry);
    // An IPv4-mapped range is written as the IPv4 range it maps, so that it meets unwrapped addresses.
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96)
      return { kind: 'range', range: [(parsed as ipaddr.IPv6).toIPv4Address(), prefix - 96] };
    return { kind: 'range', range: [parsed, prefix] };
  }
  const ip = parseIpLiteral(entry);
  if (ip) return { kind: 'range', range: [ip, ip.kind() === 'ipv4' ? 32 : 128] };
  if (entry.length <= maxHostLength && hostNamePattern.test(entry)) return { kind: 'name', name: entry };
  return `${raw}: not a host name, *.suffix, IP address or CIDR`;
}

/** Why an allow-list entry is not valid, or null when it is (for the configuration's checks). */
export function allowEntryProblem(entry: string): string | null {
  const parsed = parseAllowEntry(entry);
  return typeof parsed === 'string' ? parsed : null;
}

/** Whether an address (a decision's, so already checked) is on loopback: only a loopback exception is. */
export function isLoopbackAddress(address: string): boolean {
  return ipaddr.isValid(address) && ipaddr.process(address).range() === 'loopback';
}

/** The reason an address is not the public internet, or null when it is. */
function rangeReason(address: Address): EgressRefusalReason | null {
  const range = address.range();
  switch (range) {
    case 'unicast':
      return address.kind() === 'ipv6' && !address.match(ipv6GlobalUnicast) ? 'reserved' : null;
    case 'loopback':
      return 'loopback';
    case 'unspecified':
      return 'unspecified';
    case 'private':
    case 'uniqueLocal':
      return 'private';
    case 'linkLocal':
      return 'link-local';
    case 'carrierGradeNat':
      return 'cgnat';
    case 'multicast':
      return 'multicast';
    case 'broadcast':
      return 'broadcast';
    default:
      return 'reserved';
  }
}

async function defaultLookup(host: string): Promise<readonly ResolvedAddress[]> {
  const found = await systemLookup(host, { all: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
}

/**
 * For air-gapped hosts and the tests (PORTHOLE_SANDBOX_LOOPBACK_ONLY): no name is looked up, so no
 * DNS query ever leaves this host for a sandbox; only `localhost` resolves (to loopback, which the
 * policy refuses unless it is the demo issuer). IP literals are still judged by the policy.
 */
export async function loopbackOnlyLookup(host: string): Promise<readonly ResolvedAddress[]> {
  if (host === 'localhost') return [{ address: '127.0.0.1', family: 4 }];
  throw Object.assign(new Error(`${host} is not resolved on this host (PORTHOLE_SANDBOX_LOOPBACK_ONLY)`), { code: 'ENOTFOUND' });
}

/** Throws on an invalid allow-list entry (the configuration checks them first with allowEntryProblem). */
export function createEgressPolicy(options: EgressPolicyOptions = {}): EgressPolicy {
  const entries = (options.allow ?? []).map((raw) => {
    const parsed = parseAllowEntry(raw);
    if (typeof parsed === 'string') throw new Error(`egress allow list: ${parsed}`);
    return parsed;
  });
  const exceptions = (options.loopbackExceptions ?? []).map((e) => {
    const host = normalizeHost(e.host);
    return { host: parseIpLiteral(host)?.toString() ?? host, port: e.port };
  });
  const lookup = options.lookup ?? defaultLookup;

  const nameAllowed = (host: string) => entries.some((e) => (e.kind === 'name' && e.name === host) || (e.kind === 'suffix' && host.endsWith(`.${e.suffix}`)));
  const rangeAllowed = (address: Address) => entries.some((e) => e.kind === 'range' && e.range[0].kind() === address.kind() && address.match(e.range));

  /** Judges one address of host:port; null when it passes. */
  function judge(host: string, port: number, address: Address): EgressRefusalReason | null {
    const reason = rangeReason(address);
    if (reason === 'loopback' && exceptions.some((e) => e.host === host && e.port === port)) return null;
    // 0.0.0.0 and :: reach this host's own services on Linux: as unreachable for the allow list as loopback.
    if (reason === 'loopback' || reason === 'unspecified') return reason;
    const isListed = rangeAllowed(address);
    if (reason !== null && !isListed) return reason;
    if (entries.length > 0 && !isListed && !nameAllowed(host)) return 'not-allowed';
    return null;
  }

  return {
    async decide(rawHost, port, { viaUpstream = false } = {}) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) return { allowed: false, reason: 'invalid-port' };
      const host = normalizeHost(rawHost);
      if (host.length === 0 || host.length > maxHostLength) return { allowed: false, reason: 'invalid-host' };
      const literal = parseIpLiteral(host);
      let resolved: readonly ResolvedAddress[];
      if (literal) {
        resolved = [{ address: literal.toString(), family: literal.kind() === 'ipv4' ? 4 : 6 }];
      } else {
        if (isIP(host) !== 0 || !hostNamePattern.test(host)) return { allowed: false, reason: 'invalid-host' };
        try {
          resolved = await lookup(host);
          if (resolved.length === 0) throw Object.assign(new Error('no address'), { code: 'ENODATA' });
        } catch (error) {
          const detail = String((error as NodeJS.ErrnoException).code ?? 'lookup failed');
          if (viaUpstream && entries.length > 0) {
            return nameAllowed(host) ? { allowed: true, address: null, family: null, addresses: [] } : { allowed: false, reason: 'not-allowed', detail };
          }
          return { allowed: false, reason: 'resolve-failed', detail };
        }
      }
      const key = literal ? literal.toString() : host;
      const checked: ResolvedAddress[] = [];
      // Every address must pass: a name that points inside is refused whole, whichever it would have been given.
      for (const r of resolved) {
        if (isIP(r.address) === 0 || r.address.includes('%')) return { allowed: false, reason: 'reserved', address: r.address };
        const address = ipaddr.process(r.address);
        const text = address.toString();
        const reason = judge(key, port, address);
        if (reason) return { allowed: false, reason, address: text };
        checked.push({ address: text, family: address.kind() === 'ipv4' ? 4 : 6 });
      }
      checked.sort((a, b) => a.family - b.family);
      const first = checked[0]!;
      return { allowed: true, address: first.address, family: first.family, addresses: checked };
    },
  };
}
