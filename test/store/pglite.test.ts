import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { newSessionId } from '../../src/protocol/ids.js';
import { storeConformance } from '../../src/store/conformance.js';
import { openPglite } from '../../src/store/postgres/pglite-database.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'porthole-test-pglite-'));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

storeConformance('pglite', () => openPglite(join(dir, 'conformance')));

it('pglite keeps its data in <dataDir>/pglite across a reopen', async () => {
  const dataDir = join(dir, 'reopen');
  const id = newSessionId();
  const first = await openPglite(dataDir);
  const session = await first
    .migrate()
    .then(() => first.createSession({ id, provider: 'demo', userId: null }))
    .finally(() => first.close());
  const second = await openPglite(dataDir);
  try {
    await second.migrate();
    assert.deepEqual(await second.getSession(id), session);
  } finally {
    await second.close();
  }
});
