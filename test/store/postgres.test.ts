import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AppError } from '../../src/protocol/errors.js';
import { newSessionId } from '../../src/protocol/ids.js';
import { storeConformance } from '../../src/store/conformance.js';
import { openPostgres } from '../../src/store/postgres/pg-database.js';
import { startPostgres, type TestPostgres } from '../support/postgres.js';

let server: TestPostgres | undefined;
before(async () => {
  server = await startPostgres();
});
after(() => server?.stop());

function running(): TestPostgres {
  assert.ok(server, 'PostgreSQL did not start');
  return server;
}

storeConformance('postgres', () => openPostgres(running().url));

describe('postgres availability', () => {
  it('two servers migrating a fresh database at once both succeed', async () => {
    const url = await running().createDatabase('race');
    const stores = await Promise.all([openPostgres(url), openPostgres(url)]);
    try {
      await Promise.all(stores.map((store) => store.migrate()));
      for (const store of stores) await store.createSession({ id: newSessionId(), provider: null, userId: null });
      assert.equal((await stores[0]!.listSessions()).length, 2);
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('reports STORE_UNAVAILABLE promptly while the server is down, and recovers after it restarts', async () => {
    const pg = running();
    const connectionErrors: Error[] = [];
    const store = await openPostgres(pg.url, { onConnectionError: (error) => connectionErrors.push(error) });
    try {
      await store.migrate();
      const session = await store.createSession({ id: newSessionId(), provider: 'demo', userId: null });

      await pg.shutdown();
      for (const call of [() => store.getSession(session.id), () => store.createSession({ id: newSessionId(), provider: null, userId: null })]) {
        const startedAt = Date.now();
        await assert.rejects(call(), (error) => {
          assert.ok(error instanceof AppError, String(error));
          assert.equal(error.code, 'STORE_UNAVAILABLE');
          assert.ok(error.cause, 'the driver error is kept as the cause');
          return true;
        });
        assert.ok(Date.now() - startedAt < 5_000, `took ${Date.now() - startedAt} ms`);
      }

      await pg.start();
      assert.deepEqual(await store.getSession(session.id), session);
      await store.createSession({ id: newSessionId(), provider: null, userId: null });
    } finally {
      await store.close();
    }
  });
});
