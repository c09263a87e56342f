// @porthole/sdk/browser: frames porthole's viewer in an app's page and hands the app what the viewer
// says about the sign-in. Browser code only: no Node module, no dependency.
//
// The messages mirror porthole's documented schema (docs/embedding.md; src/protocol/embed-messages.ts
// in porthole): the viewer posts `{source: 'porthole-viewer', v: 1, type, sessionId, …}` to this
// page's origin only, and takes `configure` from this page only, at the viewer's origin.

export type SessionState = 'starting' | 'ready' | 'authenticating' | 'completed' | 'failed' | 'ended';
export type ViewerPhase = 'starting' | 'connecting' | 'connected' | 'reconnecting' | 'closed' | 'failed' | 'completed';
/** Parts of the viewer's chrome an app can hide because it shows its own; `toolbar` hides the whole header. */
export type HideablePart = 'toolbar' | 'brand' | 'dashboard' | 'paste' | 'fullscreen' | 'end';

interface ViewerMessageBase {
  source: 'porthole-viewer';
  v: 1;
  sessionId: string;
}
export interface ViewerHello extends ViewerMessageBase {
  type: 'hello';
}
/** On every change of the session's state, the viewer's phase or the sentence it shows. */
export interface ViewerStateMessage extends ViewerMessageBase {
  type: 'state';
  state: SessionState;
  phase: ViewerPhase;
  /** The sentence the person sees, in the configured language. */
  sentence: string;
  /** The catalogue key of that sentence (stable: choose your own words by it). */
  sentenceKey?: string;
}
/** The sign-in completed and the credential is stored: fetch it from your server (getCredentials). */
export interface ViewerCompleted extends ViewerMessageBase {
  type: 'completed';
  account: string | null;
}
export interface ViewerFailed extends ViewerMessageBase {
  type: 'failed';
  /** porthole's error code (BOOT_TIMEOUT, …): for your logs and choices, not for the person. */
  code: string;
  sentence: string;
}
export interface ViewerEnded extends ViewerMessageBase {
  type: 'ended';
  /** user | idle_timeout | max_lifetime | sandbox_exited | shutdown, or null. */
  reason: string | null;
}
export type ViewerMessage = ViewerHello | ViewerStateMessage | ViewerCompleted | ViewerFailed | ViewerEnded;

/** What `on` listens to, and what each listener gets. */
export interface ViewerEvents {
  state: ViewerStateMessage;
  completed: ViewerCompleted;
  failed: ViewerFailed;
  ended: ViewerEnded;
}
export type ViewerEventName = keyof ViewerEvents;

export interface MountViewerOptions {
  /** The viewer URL your server got from createViewerTicket (absolute, or relative to this page when you proxy porthole). */
  viewerUrl: string;
  /** A BCP 47 tag for the viewer's `<html lang>`, when you send `strings` in that language. */
  lang?: string;
  /** Sentence key → your wording, with `{name}` placeholders; English by default. */
  strings?: Record<string, string>;
  /** CSS custom properties for the viewer (`{'--accent': '#0a7'}`). */
  theme?: Record<string, string>;
  /** Viewer controls your page replaces with its own. */
  hide?: HideablePart[];
  /** The iframe's accessible name. */
  title?: string;
}

export interface ViewerHandle {
  readonly iframe: HTMLIFrameElement;
  /** The viewer's last `state` message, or null before the first. */
  readonly state: ViewerStateMessage | null;
  /** Calls `listener` for each such message from this viewer; returns a function that stops it. */
  on<E extends ViewerEventName>(event: E, listener: (message: ViewerEvents[E]) => void): () => void;
  /** Removes the iframe and stops listening. Idempotent. */
  destroy(): void;
}

const eventNames: readonly ViewerEventName[] = ['state', 'completed', 'failed', 'ended'];

/**
 * Appends porthole's viewer to `element` in an iframe (sized 100 % of it) and returns a handle
 * whose `on` surfaces the viewer's state, sentence, completion, failure and end. Your page's origin
 * must be in porthole's PORTHOLE_ALLOWED_ORIGINS, or the browser refuses to frame the viewer.
 */
export function mountViewer(element: HTMLElement, options: MountViewerOptions): ViewerHandle {
  const url = new URL(options.viewerUrl, location.href);
  const viewerOrigin = url.origin;
  url.searchParams.set('embedder', location.origin);
  if (options.lang) url.searchParams.set('lang', options.lang);
  if (options.hide && options.hide.length > 0) url.searchParams.set('hide', options.hide.join(','));

  const iframe = element.ownerDocument.createElement('iframe');
  iframe.allow = 'clipboard-read; clipboard-write; fullscreen';
  iframe.title = options.title ?? 'Sign-in';
  iframe.style.cssText = 'display:block;width:100%;height:100%;border:0';
  iframe.src = url.href;

  const listeners = new Map<ViewerEventName, Set<(message: never) => void>>(eventNames.map((name) => [name, new Set()]));
  let last: ViewerStateMessage | null = null;
  let destroyed = false;

  const configure = () => {
    const message: Record<string, unknown> = { source: 'porthole-app', v: 1, type: 'configure' };
    if (options.lang !== undefined) message.lang = options.lang;
    if (options.strings !== undefined) message.strings = options.strings;
    if (options.theme !== undefined) message.theme = options.theme;
    if (options.hide !== undefined) message.hide = options.hide;
    // To the viewer's origin only: were the frame navigated elsewhere, the browser drops the message.
    iframe.contentWindow?.postMessage(message, viewerOrigin);
  };

  const onMessage = (event: MessageEvent) => {
    // Only this frame, at the viewer's origin, speaking the viewer's schema.
    if (event.source !== iframe.contentWindow || event.origin !== viewerOrigin) return;
    const data = event.data as Partial<ViewerMessage> | null;
    if (!data || typeof data !== 'object' || data.source !== 'porthole-viewer' || data.v !== 1) return;
    if (data.type === 'hello') return configure();
    if (data.type === 'state') last = data as ViewerStateMessage;
    const set = data.type ? listeners.get(data.type as ViewerEventName) : undefined;
    for (const listener of set ?? []) {
      try {
        listener(data as never);
      } catch (error) {
        // One listener's bug does not silence the others; it still reaches the console.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  };
  window.addEventListener('message', onMessage);
  element.appendChild(iframe);

  return {
    iframe,
    get state() {
      return last;
    },
    on(name, listener) {
      const set = listeners.get(name);
      if (!set) throw new TypeError(`mountViewer: no event "${String(name)}"; known: ${eventNames.join(', ')}`);
      set.add(listener as (message: never) => void);
      return () => {
        set.delete(listener as (message: never) => void);
      };
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      window.removeEventListener('message', onMessage);
      for (const set of listeners.values()) set.clear();
      iframe.remove();
    },
  };
}
