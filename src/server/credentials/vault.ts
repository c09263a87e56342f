import type { Logger } from 'pino';
import type { CredentialState, CredentialVerification } from '../../protocol/credentials.js';
import { AppError } from '../../protocol/errors.js';
import type { SessionId } from '../../protocol/ids.js';
import type { SealedCredential, Store, StoredCredential } from '../../store/store.js';
import { open, seal } from './envelope.js';
import type { Keyring } from './keyring.js';
import { refreshDueAt } from './refresh-schedule.js';

// Captured credentials at rest: sealed here (AES-256-GCM, the session id as associated data, the
// key id beside each record) before they reach the store, opened here when the API hands one out.
// Nothing else sees plaintext; nothing here logs content.

export interface CredentialInput {
  provider: string;
  /** The credential file's content. */
  content: string;
  /** ISO time the access token expires, when known. */
  expiresAt: string | null;
  account: string | null;
  /** How far the server checked it; a put that does not say is the weaker `offline-checks-only`. */
  verification?: CredentialVerification;
}

export interface Credential {
  provider: string;
  content: string;
  capturedAt: string;
  expiresAt: string | null;
  account: string | null;
  verification: CredentialVerification;
  /** The master key it is sealed with. */
  keyId: string;
  /** `needs_login` once the provider refused a refresh. */
  state: CredentialState;
  /** When porthole refreshes it next (ISO); null: not scheduled. */
  refreshDueAt: string | null;
  refreshedAt: string | null;
  refreshError: string | null;
}

export interface PutResult {
  /** True when this call stored the credential; false when the session had one already (kept). */
  created: boolean;
  /** True when the session's stored credential differs from the one offered (the first is kept): worth a warning. */
  hasConflict: boolean;
}

/** The associated data of a webhook secret: bound to its key, never confused with a session's credential. */
const webhookSecretContext = (apiKeyId: string) => `webhook-secret:${apiKeyId}`;

export class Vault {
  /** Puts and rotations, one at a time: a put sealed under a key that a rotation is retiring would be lost. */
  #writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    readonly keyring: Keyring,
    private readonly logger?: Logger,
  ) {}

  /**
   * Seals and stores a session's credential. Idempotent: the first credential of a session stays;
   * a later put stores nothing and says whether its content differed. Throws SESSION_NOT_FOUND,
   * VALIDATION_FAILED (empty content, an expiresAt that is not a time), and the decrypt errors of
   * get() when comparing with the stored one.
   */
  async put(sessionId: SessionId, input: CredentialInput): Promise<PutResult> {
    if (input.content.length === 0) throw new AppError('VALIDATION_FAILED', { message: 'A credential must not be empty.' });
    const expiresAt = input.expiresAt === null ? null : Date.parse(input.expiresAt);
    if (expiresAt !== null && Number.isNaN(expiresAt)) {
      throw new AppError('VALIDATION_FAILED', { message: 'expiresAt must be an ISO time or null.' });
    }
    return this.#exclusive(async () => {
      const { created } = await this.store.putCredential({
        sessionId,
        provider: input.provider,
        account: input.account,
        expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
        verification: input.verification ?? 'offline-checks-only',
        refreshDueAt: refreshDueAt(expiresAt === null ? null : new Date(expiresAt).toISOString()),
        ...seal(this.keyring.current, sessionId, input.content),
      });
      if (created) return { created, hasConflict: false };
      const existing = await this.get(sessionId);
      return { created, hasConflict: existing?.content !== input.content || existing.provider !== input.provider };
    });
  }

  /** The session's credential, decrypted; null when it has none. Throws CREDENTIAL_KEY_UNKNOWN, CREDENTIAL_UNREADABLE. */
  async get(sessionId: SessionId): Promise<Credential | null> {
    for (let attempt = 1; ; attempt++) {
      const generation = this.keyring.generation;
      const record = await this.store.getCredential(sessionId);
      if (!record) return null;
      // A rotation that committed between the read and now retired the record's key: read it again, re-sealed.
      if (attempt === 1 && !this.keyring.find(record.keyId) && this.keyring.generation !== generation) continue;
      return {
        provider: record.provider,
        content: open(this.keyring, sessionId, record),
        capturedAt: record.capturedAt,
        expiresAt: record.expiresAt,
        account: record.account,
        verification: record.verification,
        keyId: record.keyId,
        state: record.state,
        refreshDueAt: record.refreshDueAt,
        refreshedAt: record.refreshedAt,
        refreshError: record.refreshError,
      };
    }
  }

  /**
   * Moves every stored credential to a new master key: the key is added to the keyring file, every
   * record is re-sealed under it in one transaction, then the old keys are removed from the file.
   * A crash at any point leaves every record readable (until the last step both keys are kept).
   * Throws KEY_ROTATION_UNAVAILABLE when the key came from PORTHOLE_MASTER_KEY, and a decrypt
   * error (nothing changed) when a stored record does not open.
   */
  rotate(): Promise<{ keyId: string; reencrypted: number }> {
    return this.#exclusive(async () => {
      if (!this.keyring.canRotate) throw new AppError('KEY_ROTATION_UNAVAILABLE');
      const previous = this.keyring.current.id;
      const next = await this.keyring.addKey();
      // On failure the new key stays in the file, unused: removing it could lose records if the
      // commit did happen and only its acknowledgement was lost. The next rotation drops it.
      const reencrypted = await this.store.resealCredentials((record) => seal(next, record.sessionId, open(this.keyring, record.sessionId, record)));
      await this.store.resealWebhookSecrets((keyId, sealed) =>
        seal(next, webhookSecretContext(keyId), open(this.keyring, webhookSecretContext(keyId), sealed)),
      );
      await this.keyring.keepOnly(next.id);
      this.logger?.info({ previousKeyId: previous, keyId: next.id, reencrypted }, 'master key rotated');
      return { keyId: next.id, reencrypted };
    });
  }

  /** A stored record's content (for a refresh, which claimed the record itself). Throws as get() does. */
  open(record: StoredCredential): string {
    return open(this.keyring, record.sessionId, record);
  }

  /** A session's new credential content (a refresh's result) sealed under the current key, for the store. */
  seal(sessionId: SessionId, content: string): SealedCredential {
    return seal(this.keyring.current, sessionId, content);
  }

  /** An API key's webhook signing secret, sealed like a credential for the store (api_keys). */
  sealWebhookSecret(apiKeyId: string, secret: string): SealedCredential {
    return seal(this.keyring.current, webhookSecretContext(apiKeyId), secret);
  }

  openWebhookSecret(apiKeyId: string, sealed: SealedCredential): string {
    return open(this.keyring, webhookSecretContext(apiKeyId), sealed);
  }

  /**
   * Stored credentials sealed with a key this keyring lacks (e.g. PORTHOLE_MASTER_KEY changed):
   * they cannot be read. Checked at start-up so the log says so before a client asks.
   */
  async missingKeys(): Promise<{ keyIds: string[]; credentials: number }> {
    const lost = (await this.store.listCredentials()).filter((c) => !this.keyring.find(c.keyId));
    return { keyIds: [...new Set(lost.map((c) => c.keyId))], credentials: lost.length };
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(fn, fn);
    this.#writes = run.catch(() => {});
    return run;
  }
}
