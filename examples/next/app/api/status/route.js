import { seen } from '../../../lib/porthole.js';

export const dynamic = 'force-dynamic';

/** What the app has learnt from porthole: the verified webhooks and the states the event stream showed. */
export function GET() {
  return Response.json(seen);
}
