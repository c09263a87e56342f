import type { paths } from './openapi.js';

// The API's shapes, named. Every one is read out of the generated openapi.ts (types only), so a
// change on the server shows up here as a type error once `npm run sdk:types` has run.

type Method = 'get' | 'post' | 'delete';
/** What a name below becomes when the document lacks it (a status or body changed): a type error where it is used, not a silent `never`. */
interface NotInTheDocument {
  readonly notInTheOpenApiDocument: true;
}
type Operation<P extends keyof paths, M extends Method> = paths[P][M];
/** The JSON body an operation answers with for `status`. */
type ResponseJson<P extends keyof paths, M extends Method, S extends number> =
  Operation<P, M> extends { responses: infer R }
    ? S extends keyof R
      ? R[S] extends { content: { 'application/json': infer T } }
        ? T
        : NotInTheDocument
      : NotInTheDocument
    : NotInTheDocument;
/** The JSON body an operation takes. */
type RequestJson<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { requestBody?: infer B }
    ? NonNullable<B> extends { content: { 'application/json': infer T } }
      ? T
      : NotInTheDocument
    : NotInTheDocument;
/** An operation's query parameters. */
type Query<P extends keyof paths, M extends Method> = Operation<P, M> extends { parameters: { query?: infer Q } } ? NonNullable<Q> : NotInTheDocument;

export type Session = ResponseJson<'/v1/sessions/{id}', 'get', 200>;
export type SessionState = Session['state'];
/** One entry of a session's timeline: a transition (`from`, `to`) or a step (start-up, credentials read). */
export type SessionEvent = ResponseJson<'/v1/sessions/{id}/events', 'get', 200>['events'][number];
export type CreateSessionInput = RequestJson<'/v1/sessions', 'post'>;
export type ListSessionsQuery = Query<'/v1/sessions', 'get'>;
export type ViewerTicket = ResponseJson<'/v1/sessions/{id}/ticket', 'post', 201>;
export type SessionCredentials = ResponseJson<'/v1/sessions/{id}/credentials', 'get', 200>;
/** A fresh access token alone, for an app that calls the provider's API itself (no refresh token). */
export type AccessToken = ResponseJson<'/v1/sessions/{id}/credentials/access-token', 'get', 200>;
/** A run of the provider's CLI with a stored credential (the remote CLI). */
export type Run = ResponseJson<'/v1/runs/{id}', 'get', 200>;
export type RunState = Run['state'];
export type CreateRunInput = RequestJson<'/v1/runs', 'post'>;
/** One entry of a run's timeline; `run.output` carries `stream` and `data`. */
export type RunEvent = ResponseJson<'/v1/runs/{id}/events', 'get', 200>['events'][number];
/** A stable error code of the server (docs/errors.md). */
export type ServerErrorCode = ResponseJson<'/v1/sessions/{id}', 'get', 404>['error']['code'];

export type CreateKeyInput = RequestJson<'/v1/keys', 'post'>;
/** A new key: `key` (and `webhookSecret`, when a webhook URL was given) are shown this once. */
export type CreatedKey = ResponseJson<'/v1/keys', 'post', 201>;
export type ApiKey = ResponseJson<'/v1/keys', 'get', 200>['keys'][number];
export type WebhookDelivery = ResponseJson<'/v1/webhooks/deliveries', 'get', 200>['deliveries'][number];
export type ListWebhookDeliveriesQuery = Query<'/v1/webhooks/deliveries', 'get'>;
