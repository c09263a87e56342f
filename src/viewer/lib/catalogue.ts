// Every sentence and label the viewer shows the person signing in, by a stable key, with its
// English default. An embedding app replaces any of them (`configure.strings`, key → template with
// `{name}` placeholders): that is the viewer's i18n hook. The words here are for the person, not
// the operator: what happened in plain words and what to do (wait, reload, start again, ask the
// app) — never a hop name, an error code, a socket path or an errno. What the operator needs goes
// under "What porthole checked" instead, in porthole's own (English) words.
//
// Pure: no DOM (test/viewer/catalogue.test.ts). docs/embedding.md lists the keys.

export const englishDefaults = {
  // ---- panel titles ----
  'title.starting': 'Starting the desktop',
  'title.connecting': 'Connecting to the desktop',
  'title.connected': 'Connected',
  'title.reconnecting': 'Reconnecting',
  'title.closed': 'Session closed',
  'title.failed': 'The sign-in could not finish',
  'title.completed': 'Connected',
  'title.ended': 'Session ended',
  'title.cannotShow': 'This session cannot be shown',

  // ---- start-up and connecting ----
  'session.loading': 'Loading the session…',
  'desktop.starting': 'The desktop is starting…',
  'step.sandbox': 'Preparing a desktop',
  'step.agent': 'Starting the desktop',
  'step.vnc': 'Connecting to the desktop',
  'step.login': 'Opening the sign-in page',
  'step.running': '{step}…',
  'desktop.connecting': 'Connecting to the desktop…',
  'desktop.connected': 'Connected to the desktop.',

  // ---- waiting to try again ({seconds}: whole seconds left) ----
  'desktop.starting.retrying': 'The desktop is still starting. Trying again in {seconds} s…',
  'desktop.unreachable.retrying': 'The desktop is not answering. Trying again in {seconds} s…',
  'desktop.slow.retrying': 'The desktop is taking longer than usual. Trying again in {seconds} s…',
  // The machine (porthole node) the desktop runs on; {host}: its name.
  'host.unreachable.retrying': 'The machine running this desktop is not answering. Trying again in {seconds} s…',
  'host.unreachable.named.retrying': 'The machine running this desktop ({host}) is not answering. Trying again in {seconds} s…',
  'connection.lost.retrying': 'The connection to the desktop was lost. Reconnecting in {seconds} s…',
  'service.restarting.retrying': 'The service is restarting. Trying again in {seconds} s…',
  'service.unreachable.retrying': 'The service cannot be reached. Trying again in {seconds} s…',
  'service.error.retrying': 'The service has a problem. Trying again in {seconds} s…',

  // ---- the end ({provider}: the provider's name; {account}: the account signed in) ----
  'completed.reading': 'Connected. Reading the account…',
  'completed.account': 'Connected to {provider} as {account}. You can close this page.',
  'completed.provider': 'Connected to {provider}. You can close this page.',
  'completed.plain': 'Connected. You can close this page.',
  // The same, framed in an app's page: that page is the app's, and the person goes on there.
  'completed.framed.account': 'Connected to {provider} as {account}.',
  'completed.framed.provider': 'Connected to {provider}.',
  'completed.framed.plain': 'Connected.',
  'ended.user': 'You ended this session.',
  'ended.idle_timeout': 'This session ended because it was not used for a while. Start again to sign in.',
  'ended.max_lifetime': 'This session ended because it was open for too long. Start again to sign in.',
  'ended.sandbox_exited': 'The desktop closed unexpectedly. Start again to sign in.',
  'ended.shutdown': 'The service restarted and this session ended. Start again to sign in.',
  'ended.unknown': 'The session has ended.',
  'ended.reading': 'This session is over. Finding out why…',
  'failed.unverified': 'Your sign-in could not be confirmed with the provider, so nothing was saved. Start again to sign in once more.',
  'failed.credential': 'The sign-in finished, but its result could not be used. Start again; if this happens again, contact the app’s support.',
  'failed.slow': 'The desktop took too long to start. Start again to try once more.',
  'failed.limit': 'The desktop ran out of room and was closed. Start again; if this happens again, contact the app’s support.',
  'failed.busy': 'The service is busy right now. Wait a minute, then start again.',
  'failed.hostLost': 'The machine running this desktop stopped answering, and the desktop was lost with it. Start again to sign in.',
  'failed.hostLost.named': 'The machine running this desktop ({host}) stopped answering, and the desktop was lost with it. Start again to sign in.',
  'failed.generic': 'Something went wrong while preparing the sign-in. Start again; if this happens again, contact the app’s support.',

  // ---- a page that cannot show its session ----
  'session.notFound': 'This session does not exist (any more). Start again from the app that sent you here.',
  'ticket.expired': 'This viewer link has expired. Open it again from the app that sent you here to get a new one.',
  'ticket.missing': 'This viewer link is incomplete. Open it again from the app that sent you here.',
  'ticket.invalid': 'This viewer link is not valid. Open it again from the app that sent you here.',
  'ticket.refused': 'This viewer link was not accepted. Open it again from the app that sent you here.',
  'ticket.wrongSession': 'This viewer link belongs to another session.',
  'page.notAllowed': 'This page is not allowed to show the desktop. Contact the app’s support.',
  'connection.refused': 'The connection to the desktop was refused. Reload the page; if this happens again, contact the app’s support.',
  'address.invalid': 'This address is not a viewer address. Open the link again from the app that sent you here.',
  'viewer.cannotConnect': 'The viewer could not connect. Reload the page to try again.',
  'viewer.unexpected': 'Something went wrong. Reload the page; if this happens again, contact the app’s support.',

  // ---- the person's own actions ----
  'session.ending': 'Ending the session…',
  'session.endFailed': 'The session could not be ended. Try again in a moment.',
  'fullscreen.unavailable': 'Fullscreen is not available here.',
  'paste.notConnected': 'The desktop is not connected; nothing was typed.',
  'paste.typing': 'Typing the pasted text into the desktop…',
  'paste.typed.one': 'Typed 1 character into the desktop’s focused field.',
  'paste.typed.other': 'Typed {count} characters into the desktop’s focused field.',
  'paste.empty': 'The clipboard holds no text to paste.',
  'paste.tooLong': 'That text is {size} KiB; Paste types at most {limit} KiB into the desktop. Copy a shorter text (a password, a code, a key).',

  // ---- labels ----
  'label.loading': 'Loading…',
  'label.dashboard': 'Dashboard',
  'label.paste': 'Paste',
  'label.fullscreen': 'Fullscreen',
  'label.exitFullscreen': 'Exit fullscreen',
  'label.end': 'End session',
  'label.reconnectNow': 'Reconnect now',
  'label.backToDashboard': 'Back to the dashboard',
  'label.details': 'What porthole checked',
  'label.pasteTitle': 'Paste into the desktop',
  'label.pasteHelp':
    'This browser does not let the page read your clipboard. Paste here (Ctrl+V, ⌘V, or a long press), then “Type it”: the text is typed into the field that has focus on the desktop.',
  'label.pasteText': 'Text to type',
  'label.pasteShow': 'Show the text',
  'label.pasteCancel': 'Cancel',
  'label.pasteSubmit': 'Type it',
} as const satisfies Record<string, string>;

export type PhraseKey = keyof typeof englishDefaults;
export type PhraseParams = Readonly<Record<string, string | number>>;

/** Something to tell the person: a key of the catalogue and the values of its placeholders. */
export interface Phrase {
  readonly key: PhraseKey;
  readonly params?: PhraseParams;
}

export function phrase(key: PhraseKey, params?: PhraseParams): Phrase {
  return params === undefined ? { key } : { key, params };
}

export function isPhraseKey(value: unknown): value is PhraseKey {
  return typeof value === 'string' && Object.hasOwn(englishDefaults, value);
}

/** `{name}` → its value; a placeholder without a value stays as written, so a typo shows rather than vanishes. */
export function fillTemplate(template: string, params: PhraseParams = {}): string {
  return template.replace(/\{([A-Za-z][A-Za-z0-9_]*)\}/g, (whole, name: string) => (Object.hasOwn(params, name) ? String(params[name]) : whole));
}

/** A template longer than this is refused: a sentence, not a page. */
const maxTemplateChars = 500;

/** The English defaults, with the templates an app sent in their place. */
export class Catalogue {
  readonly #overrides = new Map<PhraseKey, string>();

  /**
   * Takes an app's templates; later calls add to and replace earlier ones. Returns the keys it
   * ignored (not in the catalogue, or not a string of at most 500 characters).
   */
  override(strings: Readonly<Record<string, unknown>>): string[] {
    const ignored: string[] = [];
    for (const [key, template] of Object.entries(strings)) {
      if (isPhraseKey(key) && typeof template === 'string' && template.length <= maxTemplateChars) this.#overrides.set(key, template);
      else ignored.push(key);
    }
    return ignored;
  }

  template(key: PhraseKey): string {
    return this.#overrides.get(key) ?? englishDefaults[key];
  }

  format(said: Phrase): string {
    return fillTemplate(this.template(said.key), said.params);
  }
}
