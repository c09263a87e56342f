import assert from 'node:assert/strict';
import { lookup as systemLookup } from 'node:dns/promises';
import { describe, test } from 'node:test';
import {
  allowEntryProblem,
  createEgressPolicy,
  type EgressLookup,
  type EgressPolicyOptions,
  type ResolvedAddress,
} from '../../src/server/egress/egress-policy.js';

// The policy's decisions, address by address: IP literals need no resolution, and the names below
// resolve through a table (a lookup given to the policy), so nothing here touches the network.
// Only `localhost` goes through the system's resolver (/etc/hosts).

const names: Record<string, readonly ResolvedAddress[]> = {
  [`${`${'a'.repeat(63)}.`.repeat(3)}${'b'.repeat(61)}`]: [{ address: '93.184.215.14', family: 4 }],
  'public.example': [{ address: '93.184.215.14', family: 4 }],
  'dual.example': [
    { address: '2606:4700:4700::1111', family: 6 },
    { address: '93.184.215.14', family: 4 },
  ],
  'mixed.example': [
    { address: '93.184.215.14', family: 4 },
    { address: '10.0.0.7', family: 4 },
  ],
  'inside.example': [{ address: '10.0.0.7', family: 4 }],
  'mapped.example': [{ address: '::ffff:127.0.0.1', family: 6 }],
  'corp.example': [{ address: '93.184.215.14', family: 4 }],
  'api.corp.example': [{ address: '93.184.215.14', family: 4 }],
  'db.corp.example': [{ address: '10.20.0.5', family: 4 }],
};
const lookup: EgressLookup = async (host) => {
  if (host === 'localhost') return (await systemLookup(host, { all: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
  const found = names[host];
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return found;
};

type Expected = 'allowed' | string;
const cases: Array<[host: string, port: number, expected: Expected, options?: EgressPolicyOptions]> = [
  // The public internet passes by default.
  ['8.8.8.8', 443, 'allowed'],
  ['1.1.1.1', 80, 'allowed'],
  ['172.32.0.1', 443, 'allowed'],
  ['100.128.0.1', 443, 'allowed'],
  ['2606:4700:4700::1111', 443, 'allowed'],
  ['[2606:4700:4700::1111]', 443, 'allowed'],
  ['public.example', 443, 'allowed'],
  ['PUBLIC.Example.', 443, 'allowed'],
  ['8.8.8.8', 65535, 'allowed'],
  // Loopback, in every spelling.
  ['127.0.0.1', 443, 'loopback'],
  ['127.255.0.1', 443, 'loopback'],
  ['::1', 443, 'loopback'],
  ['[::1]', 443, 'loopback'],
  ['::ffff:127.0.0.1', 443, 'loopback'],
  ['mapped.example', 443, 'loopback'],
  ['localhost', 443, 'loopback'],
  // Unspecified addresses reach this host's own services.
  ['0.0.0.0', 443, 'unspecified'],
  ['0.1.2.3', 443, 'unspecified'],
  ['::', 443, 'unspecified'],
  // Private networks.
  ['10.1.2.3', 443, 'private'],
  ['172.16.0.1', 443, 'private'],
  ['172.31.255.255', 443, 'private'],
  ['192.168.1.1', 443, 'private'],
  ['::ffff:10.0.0.1', 443, 'private'],
  ['fc00::1', 443, 'private'],
  ['fd12:3456::1', 443, 'private'],
  ['inside.example', 443, 'private'],
  // A name is refused whole when any of its addresses is.
  ['mixed.example', 443, 'private'],
  ['169.254.169.254', 80, 'link-local'],
  ['fe80::1', 443, 'link-local'],
  ['100.64.0.1', 443, 'cgnat'],
  ['100.127.255.255', 443, 'cgnat'],
  ['224.0.0.1', 443, 'multicast'],
  ['ff02::1', 443, 'multicast'],
  ['255.255.255.255', 443, 'broadcast'],
  // Reserved, documentation, benchmarking, translation and tunnelling ranges.
  ['192.0.2.1', 443, 'reserved'],
  ['198.51.100.1', 443, 'reserved'],
  ['203.0.113.2', 443, 'reserved'],
  ['198.18.0.1', 443, 'reserved'],
  ['240.0.0.1', 443, 'reserved'],
  ['192.0.0.1', 443, 'reserved'],
  ['2001:db8::1', 443, 'reserved'],
  ['64:ff9b::a00:1', 443, 'reserved'],
  ['2002:a00:1::', 443, 'reserved'],
  ['2001::1', 443, 'reserved'],
  ['::a00:1', 443, 'reserved'],
  ['fec0::1', 443, 'reserved'],
  // Ports and names.
  ['8.8.8.8', 0, 'invalid-port'],
  ['8.8.8.8', 65536, 'invalid-port'],
  ['8.8.8.8', -1, 'invalid-port'],
  ['8.8.8.8', 1.5, 'invalid-port'],
  ['', 443, 'invalid-host'],
  [`${`${'a'.repeat(63)}.`.repeat(3)}${'b'.repeat(61)}`, 443, 'allowed'],
  [`${`${'a'.repeat(63)}.`.repeat(3)}${'b'.repeat(62)}`, 443, 'invalid-host'],
  [`${'a'.repeat(64)}.example`, 443, 'invalid-host'],
  ['bad host', 443, 'invalid-host'],
  ['evil.example/x', 443, 'invalid-host'],
  ['fe80::1%eth0', 443, 'invalid-host'],
  ['nowhere.example', 443, 'resolve-failed'],
  // The allow list: only its entries pass; an IP or CIDR entry also opens private and reserved ranges.
  ['203.0.113.2', 8080, 'allowed', { allow: ['203.0.113.0/24'] }],
  ['8.8.8.8', 443, 'not-allowed', { allow: ['203.0.113.0/24'] }],
  ['10.0.0.1', 443, 'private', { allow: ['203.0.113.0/24'] }],
  ['10.1.2.3', 443, 'allowed', { allow: ['0.0.0.0/0'] }],
  ['10.20.0.5', 5432, 'allowed', { allow: ['10.20.0.5'] }],
  ['10.20.0.6', 5432, 'private', { allow: ['10.20.0.5'] }],
  ['fd00::5', 443, 'allowed', { allow: ['fd00::/8'] }],
  ['::ffff:10.1.2.3', 443, 'allowed', { allow: ['::ffff:10.0.0.0/104'] }],
  ['api.corp.example', 443, 'allowed', { allow: ['*.corp.example'] }],
  ['api.corp.example', 443, 'allowed', { allow: ['api.corp.example'] }],
  ['corp.example', 443, 'not-allowed', { allow: ['*.corp.example'] }],
  ['public.example', 443, 'not-allowed', { allow: ['*.corp.example'] }],
  // A name entry admits a name, not the private address it resolves to; a CIDR entry does.
  ['db.corp.example', 5432, 'private', { allow: ['*.corp.example'] }],
  ['db.corp.example', 5432, 'allowed', { allow: ['10.20.0.0/16'] }],
  // Loopback and unspecified never pass on the allow list…
  ['127.0.0.1', 443, 'loopback', { allow: ['127.0.0.0/8'] }],
  ['127.0.0.1', 443, 'loopback', { allow: ['0.0.0.0/0'] }],
  ['::1', 443, 'loopback', { allow: ['::/0'] }],
  ['0.0.0.0', 443, 'unspecified', { allow: ['0.0.0.0/0'] }],
  ['localhost', 443, 'loopback', { allow: ['localhost'] }],
  // …only as an exact loopback exception, which the allow list does not close.
  ['127.0.0.1', 45678, 'allowed', { loopbackExceptions: [{ host: '127.0.0.1', port: 45678 }] }],
  ['127.0.0.1', 45678, 'allowed', { allow: ['*.corp.example'], loopbackExceptions: [{ host: '127.0.0.1', port: 45678 }] }],
  ['::ffff:127.0.0.1', 45678, 'allowed', { loopbackExceptions: [{ host: '127.0.0.1', port: 45678 }] }],
  ['127.0.0.1', 45679, 'loopback', { loopbackExceptions: [{ host: '127.0.0.1', port: 45678 }] }],
  ['127.0.0.2', 45678, 'loopback', { loopbackExceptions: [{ host: '127.0.0.1', port: 45678 }] }],
  ['localhost', 45678, 'loopback', { loopbackExceptions: [{ host: '127.0.0.1', port: 45678 }] }],
];

describe('decisions', () => {
  for (const [host, port, expected, options = {}] of cases) {
    const label = `${JSON.stringify(host.length > 40 ? `${host.slice(0, 40)}…` : host)}:${port}${options.allow ? ` allow=${options.allow.join(',')}` : ''}${options.loopbackExceptions ? ' with exception' : ''} → ${expected}`;
    test(label, async () => {
      const decision = await createEgressPolicy({ lookup, ...options }).decide(host, port);
      if (expected === 'allowed') assert.equal(decision.allowed, true, JSON.stringify(decision));
      else assert.deepEqual(decision.allowed ? decision : decision.reason, expected, JSON.stringify(decision));
    });
  }
});

test('the decision names the refused address, and an allowed one lists every checked address, IPv4 first', async () => {
  const policy = createEgressPolicy({ lookup });
  assert.deepEqual(await policy.decide('mixed.example', 443), { allowed: false, reason: 'private', address: '10.0.0.7' });
  assert.deepEqual(await policy.decide('::ffff:127.0.0.1', 443), { allowed: false, reason: 'loopback', address: '127.0.0.1' });
  assert.deepEqual(await policy.decide('dual.example', 443), {
    allowed: true,
    address: '93.184.215.14',
    family: 4,
    addresses: [
      { address: '93.184.215.14', family: 4 },
      { address: '2606:4700:4700::1111', family: 6 },
    ],
  });
  assert.deepEqual(await policy.decide('nowhere.example', 443), { allowed: false, reason: 'resolve-failed', detail: 'ENOTFOUND' });
});

test('a name is resolved once per decision', async () => {
  let calls = 0;
  const policy = createEgressPolicy({
    lookup: async (host) => {
      calls++;
      return lookup(host);
    },
  });
  await policy.decide('dual.example', 443);
  assert.equal(calls, 1);
  await policy.decide('8.8.8.8', 443);
  assert.equal(calls, 1, 'an IP literal needs no lookup');
});

test('with an upstream proxy, a name porthole cannot resolve is decided on the allow list’s names alone', async () => {
  const listed = createEgressPolicy({ lookup, allow: ['intranet.corp.example', '10.0.0.0/8'] });
  assert.deepEqual(await listed.decide('intranet.corp.example', 443, { viaUpstream: true }), { allowed: true, address: null, family: null, addresses: [] });
  assert.deepEqual(await listed.decide('other.corp.example', 443, { viaUpstream: true }), { allowed: false, reason: 'not-allowed', detail: 'ENOTFOUND' });
  assert.deepEqual(
    await listed.decide('intranet.corp.example', 443),
    { allowed: false, reason: 'resolve-failed', detail: 'ENOTFOUND' },
    'without an upstream there is nothing to connect to',
  );
  const open = createEgressPolicy({ lookup });
  assert.deepEqual(
    await open.decide('intranet.corp.example', 443, { viaUpstream: true }),
    { allowed: false, reason: 'resolve-failed', detail: 'ENOTFOUND' },
    'an empty allow list proves nothing about a name',
  );
});

test('allow-list entries are checked', () => {
  for (const good of ['example.com', '*.example.com', '10.0.0.0/8', '203.0.113.7', '2001:db8::/32', '[2001:db8::1]', 'Login.Example.COM.'])
    assert.equal(allowEntryProblem(good), null, good);
  for (const bad of ['*.', '*', 'exa mple.com', '10.0.0.0/33', '10.0.0/8', '2001:db8::/129', 'http://example.com', '*.*.example.com', '10.0.0.0/'])
    assert.match(allowEntryProblem(bad) ?? '', /./, bad);
  assert.throws(() => createEgressPolicy({ allow: ['10.0.0.0/33'] }), /egress allow list: 10\.0\.0\.0\/33/);
});
