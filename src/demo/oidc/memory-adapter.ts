import type { Adapter, AdapterPayload } from 'oidc-provider';

// The demo provider's storage: in memory, gone on restart, which suits a demo whose tokens only
// have to live until the agent has captured them. Written here rather than using oidc-provider's
// built-in one because that one prints a "development-only" warning to the console on every start,
// outside porthole's logs.

interface Entry {
  payload: AdapterPayload;
  /** ms since the epoch; Infinity when the model has no expiry. */
  expiresAt: number;
}

export function createMemoryAdapterFactory(): (model: string) => Adapter {
  const entries = new Map<string, Entry>();
  /** Session uid → session id, and grant id → keys of the tokens issued under it. */
  const sessionByUid = new Map<string, string>();
  const keysByGrant = new Map<string, Set<string>>();

  const read = (key: string): AdapterPayload | undefined => {
    const entry = entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return entry.payload;
  };

  return (model) => {
    const keyOf = (id: string) => `${model}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        // Sweep on write so an idle demo provider does not grow.
        const now = Date.now();
        for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key);
        entries.set(keyOf(id), { payload, expiresAt: typeof expiresIn === 'number' ? now + expiresIn * 1000 : Infinity });
        if (model === 'Session' && payload.uid) sessionByUid.set(payload.uid, id);
        if (payload.grantId) {
          const keys = keysByGrant.get(payload.grantId) ?? new Set<string>();
          keys.add(keyOf(id));
          keysByGrant.set(payload.grantId, keys);
        }
      },
      async find(id) {
        return read(keyOf(id));
      },
      async findByUid(uid) {
        const id = sessionByUid.get(uid);
        return id === undefined ? undefined : read(keyOf(id));
      },
      async findByUserCode() {
        return undefined; // the device flow is not enabled
      },
      async consume(id) {
        const payload = read(keyOf(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id) {
        const uid = entries.get(keyOf(id))?.payload.uid;
        if (model === 'Session' && uid) sessionByUid.delete(uid);
        entries.delete(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        for (const key of keysByGrant.get(grantId) ?? []) entries.delete(key);
        keysByGrant.delete(grantId);
      },
    };
  };
}
