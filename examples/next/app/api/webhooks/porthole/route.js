import { verifyWebhook } from '@porthole/sdk';
import { seen } from '../../../../lib/porthole.js';

/** porthole's webhooks: verified (signature, timestamp) against the secret before anything is believed. */
export async function POST(request) {
  const body = await request.text();
  let event;
  try {
    event = verifyWebhook(body, request.headers, process.env.PORTHOLE_WEBHOOK_SECRET ?? '');
  } catch (error) {
    return Response.json({ error: `not a webhook from porthole: ${error.message}` }, { status: 400 });
  }
  const { session } = event.data;
  seen.webhooks.push({ id: request.headers.get('webhook-id'), type: event.type, sessionId: session.id, state: session.state });
  return new Response(null, { status: 204 });
}
