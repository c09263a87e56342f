// Token buckets by key (a session id): each holds up to `burst` tokens and refills `perSecond`.
// In memory, per process: a restart refills every bucket, which only ever lets a little more
// through, never less. A bucket that has refilled completely is the same as none, so idle ones are
// dropped once there are many.

interface Bucket {
  tokens: number;
  at: number;
}

const pruneAbove = 1024;

export class TokenBuckets {
  readonly #buckets = new Map<string, Bucket>();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {}

  /** Takes a token for `key`: 0 when there was one, else how many ms until there will be. */
  take(key: string, now = performance.now()): number {
    const bucket = this.#refilled(key, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / this.perSecond) * 1000);
  }

  /** Forgets a key (its session ended). Idempotent. */
  forget(key: string): void {
    this.#buckets.delete(key);
  }

  #refilled(key: string, now: number): Bucket {
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      if (this.#buckets.size >= pruneAbove) this.#prune(now);
      bucket = { tokens: this.burst, at: now };
      this.#buckets.set(key, bucket);
      return bucket;
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    return bucket;
  }

  #prune(now: number): void {
    const fullAfterMs = (this.burst / this.perSecond) * 1000;
    for (const [key, bucket] of this.#buckets) if (now - bucket.at >= fullAfterMs) this.#buckets.delete(key);
  }
}
