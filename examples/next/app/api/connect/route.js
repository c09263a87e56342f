import { followSession, porthole } from '../../../lib/porthole.js';

// The signed-in user of this demo app; a real app takes it from its own login.
const userId = 'demo-user';

/** Starts a porthole session for the user and returns its viewer page, on this app's own origin. */
export async function POST() {
  try {
    const session = await porthole().createSession({ provider: 'demo', userId });
    void followSession(session.id);
    const { viewerUrl } = await porthole().createViewerTicket(session.id);
    // porthole's viewer URL points at porthole; the browser reaches it through /porthole here.
    const url = new URL(viewerUrl);
    return Response.json({ sessionId: session.id, viewerUrl: `/porthole${url.pathname}${url.search}` });
  } catch (error) {
    // PortholeError: a stable code, and porthole's request id to look for in its log.
    console.error(`connect: ${error.code ?? 'ERROR'} ${error.message} (request ${error.requestId ?? '-'})`);
    return Response.json({ error: 'porthole could not start the sign-in' }, { status: 502 });
  }
}
