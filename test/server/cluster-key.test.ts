import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { AppError } from '../../src/protocol/errors.js';
import { clusterKeyFrom } from '../../src/server/cluster/cluster-key.js';

// The internal hop's signature (servers → nodes): method, path and time under a key derived from
// PORTHOLE_CLUSTER_KEY; 30 s of clock skew at most; the ticket key is a different derivation.

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return error instanceof AppError ? error.code : String(error);
  }
  return null;
};

test('a signed internal request verifies for its method and path only, within 30 s, with the same cluster key only', () => {
  const master = randomBytes(32);
  let clock = 1_800_000_000_000;
  const server = clusterKeyFrom(master, () => clock);
  const node = clusterKeyFrom(master, () => clock);
  const path = '/internal/v1/sessions/ses_abc/boot';
  const signed = server.sign('POST', path);
  assert.equal(
    codeOf(() => node.verify(signed, 'POST', path)),
    null,
  );
  assert.equal(
    codeOf(() => node.verify(signed, 'POST', '/internal/v1/sessions/ses_abc/release')),
    'INTERNAL_AUTH_INVALID',
    'another path',
  );
  assert.equal(
    codeOf(() => node.verify(signed, 'GET', path)),
    'INTERNAL_AUTH_INVALID',
    'another method',
  );
  assert.equal(
    codeOf(() => node.verify(undefined, 'POST', path)),
    'INTERNAL_AUTH_INVALID',
    'none',
  );
  assert.equal(
    codeOf(() => node.verify(`${clock}.AAAA`, 'POST', path)),
    'INTERNAL_AUTH_INVALID',
    'a made-up signature',
  );
  assert.equal(
    codeOf(() => clusterKeyFrom(randomBytes(32), () => clock).verify(signed, 'POST', path)),
    'INTERNAL_AUTH_INVALID',
    'another cluster',
  );
  const [at, mac] = signed.split('.');
  assert.equal(
    codeOf(() => node.verify(`${Number(at) + 1}.${mac}`, 'POST', path)),
    'INTERNAL_AUTH_INVALID',
    'the time is signed',
  );
  clock += 29_000;
  assert.equal(
    codeOf(() => node.verify(signed, 'POST', path)),
    null,
    'within the skew',
  );
  clock += 2_000;
  assert.equal(
    codeOf(() => node.verify(signed, 'POST', path)),
    'INTERNAL_AUTH_INVALID',
    'a replay after 30 s',
  );
  assert.notDeepEqual(server.ticketKey, master);
  assert.equal(server.ticketKey.length, 32);
  assert.deepEqual(server.ticketKey, node.ticketKey);
});
