import type { SessionEvent, SessionEventsPage } from './session.js';

// Walking the paged timeline (GET /v1/sessions/:id/events?after=&limit=) in one place for the CLI,
// the viewer and the dashboard. Its own module, free of zod, so the browser bundles stay small.

/**
 * Every event after `after`, page by page. A server from before paging answers without `hasMore`:
 * its one page is everything.
 */
export async function readEventPages(
  after: number,
  page: (after: number) => Promise<Partial<SessionEventsPage> & Pick<SessionEventsPage, 'events'>>,
): Promise<SessionEvent[]> {
  const events: SessionEvent[] = [];
  for (let next = after; ; ) {
    const got = await page(next);
    events.push(...got.events);
    const last = got.nextAfter ?? got.events.at(-1)?.seq ?? next;
    // A page that does not move forward ends the walk, whatever it says.
    if (got.hasMore !== true || last <= next) return events;
    next = last;
  }
}
