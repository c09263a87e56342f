// The messages between the viewer page and the app page that frames it (window.postMessage),
// documented in docs/embedding.md. Types and constants only: the viewer bundles this file, and an
// app's own code (or an SDK) may copy it as it is. No zod, no imports of I/O.
//
// Viewer → parent: every message is `{source: 'porthole-viewer', v: 1, type, sessionId, …}`, posted
// with the embedder's origin as targetOrigin (never '*'). Parent → viewer: `configure`, accepted
// only from the frame's parent window and from that same origin.

import type { SessionState } from './session-states.js';

export const viewerMessageSource = 'porthole-viewer';
export const appMessageSource = 'porthole-app';
/** The schema's version. A change that breaks a reader gets a new number; new optional fields do not. */
export const embedMessagesVersion = 1;

/** The viewer URL's query parameters for embedding (besides `ticket`). */
export const embedQueryParams = {
  /** The app page's origin (`https://app.example`): where the viewer posts its messages, and the only origin it takes `configure` from. */
  embedder: 'embedder',
  /** A BCP 47 language tag for `<html lang>`: for an app that sends strings in that language, or none at all. */
  lang: 'lang',
  /** A comma list of hideable parts (`toolbar,end`), for an app that does not script the frame. */
  hide: 'hide',
} as const;

/** The parts of the viewer's chrome an app can hide because it shows its own. `toolbar` hides the whole header. */
export const hideableParts = ['toolbar', 'brand', 'dashboard', 'paste', 'fullscreen', 'end'] as const;
export type HideablePart = (typeof hideableParts)[number];

/** The viewer's connection phase (body[data-phase]): `connection-phases.ts` in the viewer holds the same list. */
export type ViewerPhase = 'starting' | 'connecting' | 'connected' | 'reconnecting' | 'closed' | 'failed' | 'completed';

interface ViewerMessageBase {
  source: typeof viewerMessageSource;
  v: typeof embedMessagesVersion;
  sessionId: string;
}

/** Once, as the viewer's script starts: the parent may answer with `configure`. */
export interface ViewerHello extends ViewerMessageBase {
  type: 'hello';
}

/** On every change of the session's state, the viewer's phase or the sentence it shows. */
export interface ViewerStateMessage extends ViewerMessageBase {
  type: 'state';
  /** The session's state as the viewer last read it; `starting` until the first read. */
  state: SessionState;
  phase: ViewerPhase;
  /** The sentence the person sees, in the configured language. */
  sentence: string;
  /** The catalogue key of that sentence (stable: an app may choose its own words by it). */
  sentenceKey: string;
}

/** Once, when the sign-in completed and the credential is stored. */
export interface ViewerCompleted extends ViewerMessageBase {
  type: 'completed';
  /** The account the credential belongs to, when the provider named one. */
  account: string | null;
}

/** Once, when the session failed. */
export interface ViewerFailed extends ViewerMessageBase {
  type: 'failed';
  /** The error code (docs/errors.md), e.g. BOOT_TIMEOUT; for the app's logs and choices, not for the person. */
  code: string;
  /** The person's sentence, in the configured language. */
  sentence: string;
}

/** Once, when the session ended (by the person, idle timeout, lifetime, shutdown). */
export interface ViewerEnded extends ViewerMessageBase {
  type: 'ended';
  /** user | idle_timeout | max_lifetime | sandbox_exited | shutdown, or null when unknown. */
  reason: string | null;
}

export type ViewerMessage = ViewerHello | ViewerStateMessage | ViewerCompleted | ViewerFailed | ViewerEnded;
export type ViewerMessageType = ViewerMessage['type'];

/** Parent → viewer. Every field is optional; a later configure adds to (and overrides) an earlier one. */
export interface ConfigureMessage {
  source: typeof appMessageSource;
  v: typeof embedMessagesVersion;
  type: 'configure';
  /** Sets `<html lang>`. */
  lang?: string;
  /** Catalogue key → template with `{name}` placeholders, replacing the English default. */
  strings?: Record<string, string>;
  /** CSS custom properties (`--accent`: `#0a7`), set on the viewer's root element. */
  theme?: Record<string, string>;
  hide?: HideablePart[];
}
