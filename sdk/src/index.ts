// @porthole/sdk: porthole's API for an app's server. The browser side is `@porthole/sdk/browser`
// (mountViewer), the Node proxy for apps that must proxy is `@porthole/sdk/proxy`.

export { Porthole, type PortholeOptions, type StreamOptions, type WaitForOptions } from './client.js';
export { isPortholeError, PortholeError, type ClientErrorCode, type PortholeErrorCode, type PortholeErrorOptions } from './errors.js';
export {
  verifyWebhook,
  WebhookVerificationError,
  webhookEventTypes,
  webhookToleranceSeconds,
  type WebhookEvent,
  type WebhookEventType,
  type WebhookFailure,
  type WebhookHeaders,
} from './webhooks.js';
export type * from './types.js';
export type { paths, operations } from './openapi.js';
