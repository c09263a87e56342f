// When porthole refreshes a grant: ahead of its access token's expiry, jittered (refresher.ts).
// Pure: the vault schedules a new credential's first refresh with it, the refresher the next ones.

/**
 * How long before expiry a grant is refreshed: a fifth of the access token's lifetime, at least
 * 10 s (or half the lifetime, when shorter) and at most 5 min (a 60 s token: 12 s before; an 8 h
 * one: 5 min before; a 6 s one: 3 s before).
 */
export function refreshLeadMs(lifetimeMs: number): number {
  // A token shorter-lived than 20 s (a test's): halfway through.
  return Math.min(5 * 60_000, Math.max(Math.min(10_000, lifetimeMs / 2), lifetimeMs / 5));
}

/**
 * When a credential whose access token expires at `expiresAt` should be refreshed (ISO), jittered
 * by ±20 % of the lead; null when its expiry is unknown (nothing to schedule). Already expired: now.
 */
export function refreshDueAt(expiresAt: string | null, now: number = Date.now(), random: () => number = Math.random): string | null {
  if (expiresAt === null) return null;
  const expires = Date.parse(expiresAt);
  if (Number.isNaN(expires)) return null;
  const lead = refreshLeadMs(expires - now);
  const due = expires - lead * (1 + 0.2 * (2 * random() - 1));
  return new Date(Math.max(now, Math.round(due))).toISOString();
}
