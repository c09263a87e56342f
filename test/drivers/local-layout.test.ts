import assert from 'node:assert/strict';
import { test } from 'node:test';
import { longestSocketPath, maxUnixPathBytes, sandboxDir, socketPathsOf } from '../../src/drivers/local-layout.js';
import { pinTempSuffixBytes } from '../../src/drivers/pinned-socket.js';

// The one description of a local sandbox's directory: the driver creates it and `porthole doctor`
// checks its longest socket path, both through local-layout.ts.

const id = 'sbx_0123456789abcdefghij';

test('every socket of a sandbox: run/’s, their pins in sockets/, and host/’s', () => {
  const dir = sandboxDir('/data', id);
  assert.equal(dir, `/data/sandboxes/${id}`);
  assert.deepEqual(
    socketPathsOf(dir)
      .map((p) => p.slice(dir.length + 1))
      .sort(),
    ['host/proxy.sock', 'host/server.sock', 'run/agent.sock', 'run/vnc.sock', 'sockets/agent.sock', 'sockets/vnc.sock'],
  );
});

test('the longest is the pinned agent socket, with room for the pin’s temporary name', () => {
  const longest = longestSocketPath('/data', id);
  assert.equal(longest.path, `/data/sandboxes/${id}/sockets/agent.sock`);
  assert.equal(longest.bytes, Buffer.byteLength(longest.path) + pinTempSuffixBytes);
  assert.equal(pinTempSuffixBytes, '.0123456789ab'.length);
  assert.equal(longest.fits, true);
});

test('a data directory one byte too long does not fit', () => {
  // "/d…d" adds its k letters and one more "/" to what "/" alone gives.
  const justFits = `/${'d'.repeat(maxUnixPathBytes - longestSocketPath('/', id).bytes - 1)}`;
  assert.equal(longestSocketPath(justFits, id).bytes, maxUnixPathBytes);
  assert.equal(longestSocketPath(justFits, id).fits, true);
  assert.equal(longestSocketPath(`${justFits}d`, id).fits, false);
});
