// The host uids test sandboxes run as: PORTHOLE_TEST_SANDBOX_UIDS (first-last), so that runs side
// by side on one machine keep apart, and the after-test leak check (scripts/test.mjs) finds what
// is left of this run's sandboxes and nothing of another's.

/** The test servers' sandbox uids, as PORTHOLE_SANDBOX_UIDS takes them. */
export const testSandboxUids = process.env.PORTHOLE_TEST_SANDBOX_UIDS ?? '61100-61199';

const blockSize = 10;

/**
 * Uids for a driver test that makes sandboxes without a server: the `block`th ten from the end of
 * the test range (test servers allocate from its start). Each driver test takes a block of its own.
 */
export function driverTestUids(block: number): { first: number; last: number } {
  const match = /^(\d+)-(\d+)$/.exec(testSandboxUids);
  if (!match) throw new Error(`PORTHOLE_TEST_SANDBOX_UIDS is not first-last: ${testSandboxUids}`);
  const [first, last] = [Number(match[1]), Number(match[2])];
  const range = { first: last - blockSize * (block + 1) + 1, last: last - blockSize * block };
  if (range.first < first)
    throw new Error(`PORTHOLE_TEST_SANDBOX_UIDS ${testSandboxUids} is too small for ${block + 1} blocks of ${blockSize} driver-test uids`);
  return range;
}
