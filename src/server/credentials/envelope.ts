import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AppError } from '../../protocol/errors.js';
import type { KeyLookup, MasterKey } from './keyring.js';

// AES-256-GCM for one credential. The session id is the associated data, so a record copied onto
// another session does not open. A fresh random 96-bit nonce per seal: with one key that seals a
// few records per session, the birthday bound is far away (and rotation resets the count).

export const nonceBytes = 12;
/**
 * GCM tags may legally be shortened, and Node's decipher accepts a short tag unless told its
 * length; a 4-byte tag would make forgeries cheap. Every tag must be 16 bytes.
 */
export const tagBytes = 16;

/** A sealed credential, as stored (structurally the store's SealedCredential). */
export interface Envelope {
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export function seal(key: MasterKey, sessionId: string, plaintext: string): Envelope {
  const nonce = randomBytes(nonceBytes);
  const cipher = createCipheriv('aes-256-gcm', key.material(), nonce, { authTagLength: tagBytes });
  cipher.setAAD(Buffer.from(sessionId, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { keyId: key.id, nonce, ciphertext, tag: cipher.getAuthTag() };
}

/**
 * The plaintext, or AppError CREDENTIAL_KEY_UNKNOWN (no key with the record's id) or
 * CREDENTIAL_UNREADABLE (altered ciphertext, tag or nonce; a tag other than 16 bytes; a key id
 * naming another key; another session's record). Never returns unauthenticated bytes, and no
 * message holds content.
 */
export function open(keys: KeyLookup, sessionId: string, envelope: Envelope): string {
  const { keyId } = envelope;
  const key = keys.find(keyId);
  if (!key) {
    throw new AppError('CREDENTIAL_KEY_UNKNOWN', {
      message: `The credential of ${sessionId} was sealed with master key ${keyId}, which this server's keyring does not hold (was PORTHOLE_MASTER_KEY or the keyring file changed?).`,
      details: { sessionId, keyId },
    });
  }
  const unreadable = (why: string, cause?: unknown) =>
    new AppError('CREDENTIAL_UNREADABLE', { message: `The credential of ${sessionId} does not decrypt: ${why}.`, details: { sessionId, keyId }, cause });
  if (envelope.tag.length !== tagBytes) throw unreadable(`its GCM tag is ${envelope.tag.length} bytes; porthole requires ${tagBytes}`);
  if (envelope.nonce.length !== nonceBytes) throw unreadable(`its nonce is ${envelope.nonce.length} bytes; porthole uses ${nonceBytes}`);
  const decipher = createDecipheriv('aes-256-gcm', key.material(), envelope.nonce, { authTagLength: tagBytes });
  decipher.setAAD(Buffer.from(sessionId, 'utf8'));
  decipher.setAuthTag(envelope.tag);
  let plaintext: Buffer;
  try {
    // update() yields bytes before they are authenticated; they are used only once final() passed.
    plaintext = Buffer.concat([decipher.update(envelope.ciphertext), decipher.final()]);
  } catch (cause) {
    throw unreadable(`authentication failed (the record was altered, names another key than the one that sealed it, or belongs to another session)`, cause);
  }
  return plaintext.toString('utf8');
}
