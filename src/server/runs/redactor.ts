// What keeps a credential's secrets out of a run's log: every token-like value of the credential
// file, replaced by [redacted] in the output before it is stored or streamed. Output comes in
// chunks, so a secret may be split across two: the end of a chunk that could begin a secret is held
// back until the next chunk (or the end) says whether it does.

export const redactedMark = '[redacted]';

/** Keys whose string values are secrets in the four providers' files (access, refresh, ID tokens; a client secret). */
const secretKey = /token|secret|password|api_?key/i;
/** Shorter values are not tokens (a token type, a scope). */
const minSecretLength = 12;

/** The secrets of a credential file: string values under token-like keys, at any depth. */
export function secretsOf(...contents: readonly (string | null)[]): string[] {
  const found = new Set<string>();
  const walk = (value: unknown, key: string): void => {
    if (typeof value === 'string') {
      if (secretKey.test(key) && value.length >= minSecretLength) found.add(value);
      return;
    }
    if (Array.isArray(value)) {
      for (const inner of value) walk(inner, key);
      return;
    }
    if (typeof value === 'object' && value !== null) for (const [k, inner] of Object.entries(value)) walk(inner, k);
  };
  for (const content of contents) {
    if (content === null) continue;
    try {
      walk(JSON.parse(content), '');
    } catch {
      // Not JSON: nothing to name.
    }
  }
  // Longest first: a secret that contains another is replaced whole.
  return [...found].sort((a, b) => b.length - a.length);
}

export class Redactor {
  readonly #secrets: readonly string[];
  #held = '';

  constructor(secrets: readonly string[]) {
    this.#secrets = secrets;
  }

  /** The chunk with secrets replaced; what may be the start of a secret is kept for the next call. */
  push(chunk: string): string {
    let text = this.#held + chunk;
    for (const secret of this.#secrets) text = text.split(secret).join(redactedMark);
    const hold = this.#heldBack(text);
    this.#held = text.slice(text.length - hold);
    return text.slice(0, text.length - hold);
  }

  /** What is held back, at the end of the stream (it was not a secret). */
  flush(): string {
    const rest = this.#held;
    this.#held = '';
    return rest;
  }

  /** The longest end of `text` that a secret begins with. */
  #heldBack(text: string): number {
    let longest = 0;
    for (const secret of this.#secrets) {
      for (let k = Math.min(secret.length - 1, text.length); k > longest; k--) {
        if (secret.startsWith(text.slice(text.length - k))) {
          longest = k;
          break;
        }
      }
    }
    return longest;
  }
}
