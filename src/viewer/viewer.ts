// The viewer page: /v1/sessions/:id/viewer?ticket=…. It follows the session's start-up, shows its
// desktop through noVNC over one WebSocket to porthole, and when that connection closes it says why
// — from the close code, or by asking the server — and reconnects while the session is alive.
//
// The phase (`body[data-phase]`) changes only through `phases` (lib/connection-phases.ts), which
// checks each move against its table and keeps a final phase final. Every course of action
// (following start-up, one connection, a wait before reconnecting, the final sentence) begins with
// `phases.begin()`; a timer or request that finishes after a newer course began finds its course
// stale and does nothing, so two loops can never fight over the page.
//
// Two audiences (docs/embedding.md): what the page says is a `Phrase` of the catalogue
// (lib/catalogue.ts) for the person signing in, drawn in the configured language; the operator's
// detail (codes, hops, paths) goes under "What porthole checked". Framed by an app, the page posts
// its state to the parent and takes the parent's `configure` (lib/embed.ts says why that is safe).

import type RFB from '@novnc/novnc';
import { readEventPages } from '../protocol/event-pages.js';
import type { Session, SessionEvent, SessionEventsPage } from '../protocol/session.js';
import { embedQueryParams, embedMessagesVersion, type ViewerMessage, viewerMessageSource } from '../protocol/embed-messages.js';
import { ApiError, describeApiError, requestJson } from './lib/api-client.js';
import { Catalogue, isPhraseKey, phrase, type Phrase } from './lib/catalogue.js';
import { ConnectionPhases, finalPhaseFor, isFinalPhase, type ConnectionPhase, type Course, type FinalPhase } from './lib/connection-phases.js';
import { mustFind } from './lib/element.js';
import { configureOf, embedderOriginOf, hideablePartsOf, languageTagOf } from './lib/embed.js';
import { reconnectDelayMs } from './lib/reconnect-backoff.js';
import { checkPasteText, typeText } from './lib/paste.js';
import { diagnosedCause, diagnosisSummary, hopList, type SessionDiagnosis } from './lib/diagnosis-report.js';
import { isRetryable, refusalOf, retryableCause } from './lib/request-failure.js';
import {
  closeAction,
  completedAccount,
  completedNotice,
  failedNotice,
  isWorthDiagnosing,
  namingHost,
  type Notice,
  type RetryCause,
  retryingPhrase,
  sessionNotice,
  sessionTitle,
  ticketNotice,
  type ViewerPlace,
} from './lib/sentences.js';
import { isTerminal, type SessionState } from '../protocol/session-states.js';
import { StartProgress } from './lib/start-progress.js';
import { TicketRenewer } from './lib/ticket-renewer.js';
import { VncConnection } from './lib/vnc-connection.js';
import type { VncClose } from './lib/vnc-connection.js';
import { sessionApiPath, viewerAddressOf, vncUrl } from './lib/viewer-address.js';

/** What tests (and a curious person in the console) can read. */
interface PortholeHandle {
  rfb: RFB | null;
  sessionId: string;
  lastClose: { code: number; reason: string } | null;
  /** The diagnosis asked for after the latest failed connection, once it answered. */
  diagnosis: SessionDiagnosis | null;
}

declare global {
  interface Window {
    porthole: PortholeHandle;
  }
}

const pollIntervalMs = 100;
/** Events only say when to look; the session itself is the truth, read at least this often. */
const sessionReadEveryPolls = 10;
/** After the session ended, how long the server has to close the connection itself. */
const serverCloseGraceMs = 2_000;
/**
 * How long a diagnosis may take before the viewer stops waiting for it. The server gives each
 * probing hop 3 s and stops at the first failure; the reconnect never waits for it either way.
 */
const diagnosisTimeoutMs = 5_000;

const ui = {
  sessionId: mustFind('#session-id'),
  status: mustFind('#status'),
  screen: mustFind('#screen'),
  panel: mustFind('#panel'),
  panelTitle: mustFind('#panel-title'),
  panelSentence: mustFind('#panel-sentence'),
  operatorDetail: mustFind('#operator-detail'),
  failedStep: mustFind('#failed-step'),
  steps: mustFind<HTMLOListElement>('#steps'),
  diagnosis: mustFind<HTMLDetailsElement>('#diagnosis'),
  diagnosisSummary: mustFind('#diagnosis-summary'),
  diagnosisHops: mustFind('#diagnosis-hops'),
  reconnectNow: mustFind<HTMLButtonElement>('#reconnect-now'),
  panelDashboard: mustFind('#panel-dashboard'),
  endSession: mustFind<HTMLButtonElement>('#end-session'),
  fullscreen: mustFind<HTMLButtonElement>('#fullscreen'),
  paste: mustFind<HTMLButtonElement>('#paste'),
  pasteDialog: mustFind<HTMLDialogElement>('#paste-dialog'),
  pasteForm: mustFind<HTMLFormElement>('#paste-form'),
  pasteText: mustFind<HTMLInputElement>('#paste-text'),
  pasteShow: mustFind<HTMLInputElement>('#paste-show'),
  pasteError: mustFind('#paste-error'),
  pasteCancel: mustFind<HTMLButtonElement>('#paste-cancel'),
};

const panelTitles: Record<ConnectionPhase, Phrase> = {
  starting: phrase('title.starting'),
  connecting: phrase('title.connecting'),
  connected: phrase('title.connected'),
  reconnecting: phrase('title.reconnecting'),
  closed: phrase('title.closed'),
  failed: phrase('title.failed'),
  completed: phrase('title.completed'),
};

/** A sentence for the person alone. */
const say = (key: Parameters<typeof phrase>[0], params?: Parameters<typeof phrase>[1]): Notice => ({ person: phrase(key, params), operator: null });

// ---- where the page came from ----

/** Null when the path is not `<prefix>/v1/sessions/<id>/viewer`; the API is under the same prefix. */
const address = viewerAddressOf(location.pathname);
const sessionId = address?.sessionId ?? '';
const ticketStorageKey = `porthole.ticket.${sessionId}`;
const query = new URLSearchParams(location.search);
const initialTicket = takeTicket();

const handle: PortholeHandle = { rfb: null, sessionId: decodeURIComponent(sessionId), lastClose: null, diagnosis: null };
window.porthole = handle;

/**
 * The ticket from ?ticket=, taken out of the address bar at once (it must not linger in history,
 * bookmarks or a screen share). A copy in sessionStorage lets a reload of this tab work while the
 * renewed ticket is valid; storage can be blocked inside an iframe, and then reload simply cannot.
 */
function takeTicket(): string | null {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('ticket');
  if (fromUrl !== null) {
    params.delete('ticket');
    const query = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${query ? `?${query}` : ''}${location.hash}`);
    rememberTicket(fromUrl);
    return fromUrl;
  }
  try {
    return sessionStorage.getItem(ticketStorageKey);
  } catch {
    return null;
  }
}

function rememberTicket(ticket: string): void {
  try {
    sessionStorage.setItem(ticketStorageKey, ticket);
  } catch {
    // Storage blocked (third-party iframe): only reload-survival is lost.
  }
}

// ---- state ----

const renewer = new TicketRenewer(address ? sessionApiPath(address, '/ticket') : '', initialTicket ?? '', {
  onRenewed: (ticket) => rememberTicket(ticket),
});
const progress = new StartProgress();
const phases = new ConnectionPhases({
  // A refused move is a bug: an error in the console, which the e2e tests fail on.
  log: (line, isRefused) => (isRefused ? console.error(line) : console.debug(line)),
});
phases.onMove(({ to }) => {
  document.body.dataset.phase = to;
});
const catalogue = new Catalogue();
/** What the page says now: drawn again in the new words when the app sends its own. */
const shown: { title: Phrase; notice: Notice } = { title: panelTitles.starting, notice: say('session.loading') };
/** The session's state as last read (or learnt from a close): what the embedding app hears as `state`. */
let sessionState: SessionState = 'starting';
let connection: VncConnection | null = null;
/** Consecutive reconnect attempts; reset once a connection reaches the desktop. */
let attempt = 0;
/** Set by "Reconnect now" while a retry is counting down. */
let retryNow: (() => void) | null = null;
let isEnding = false;
/** A close that arrived while "End session" was in flight; handled if ending fails. */
let closeDuringEnd: { close: VncClose; course: Course } | null = null;
/** Counts failed connections; a diagnosis answering after a newer failure (or a success) is dropped. */
let failureSeq = 0;
/** The latest failure's cause as its diagnosis tells it; null until it answers, or when it decided nothing. */
let diagnosedFailureCause: RetryCause | null = null;

// ---- drawing ----

/** Moves to `phase` (or stays there) and draws it; a move the table refuses draws nothing. */
function setPhase(phase: ConnectionPhase, notice: Notice, title: Phrase = panelTitles[phase]): void {
  if (!phases.moveTo(phase)) return;
  shown.title = title;
  ui.panel.hidden = phase === 'connected';
  ui.reconnectNow.hidden = phase !== 'reconnecting';
  const isFinal = isFinalPhase(phase);
  ui.panelDashboard.hidden = !isFinal;
  ui.endSession.disabled = isFinal || isEnding;
  ui.paste.disabled = phase !== 'connected' || isPasting;
  if (phase !== 'connected' && ui.pasteDialog.open) ui.pasteDialog.close();
  drawSteps(phase);
  setSentence(notice);
}

/** Says `notice`: the person's sentence in the status line and the panel, the operator's under the details. */
function setSentence(notice: Notice): void {
  shown.notice = notice;
  drawWords();
}

/** Draws what `shown` holds in the catalogue's current words, and tells the embedding app. */
function drawWords(): void {
  const sentence = catalogue.format(shown.notice.person);
  ui.status.textContent = sentence;
  ui.status.title = sentence;
  ui.panelSentence.textContent = sentence;
  ui.panelTitle.textContent = catalogue.format(shown.title);
  ui.operatorDetail.textContent = shown.notice.operator ?? '';
  ui.operatorDetail.hidden = shown.notice.operator === null;
  drawDiagnosis();
  postState(sentence);
}

/** The labels in viewer.html (`data-phrase`) and the fullscreen button, in the catalogue's current words. */
function drawLabels(): void {
  for (const element of document.querySelectorAll<HTMLElement>('[data-phrase]')) {
    const key = element.dataset.phrase;
    if (isPhraseKey(key)) element.textContent = catalogue.format(phrase(key));
  }
  ui.fullscreen.textContent = catalogue.format(phrase(document.fullscreenElement ? 'label.exitFullscreen' : 'label.fullscreen'));
}

/** The checklist matters while starting, and afterwards only if start-up is what went wrong. */
function drawSteps(phase: ConnectionPhase = phases.phase): void {
  progress.render(ui.steps, Date.now(), { labelOf: (view) => catalogue.format(phrase(`step.${view.step}`)), isForOperator: false });
  const failed = progress.failedStep();
  // A failure after a start-up that went through is not a start-up story: an all-green list would only distract.
  const isStartUpCut = progress.views.some((view) => view.state === 'failed' || view.state === 'stopped');
  const isStartUpStory = phase === 'starting' || (phase !== 'completed' && isStartUpCut);
  ui.steps.hidden = !isStartUpStory;
  // For the operator, under the details: the step's error names sandboxes, paths and errnos.
  ui.failedStep.hidden = !(phase === 'failed' && failed);
  ui.failedStep.textContent = failed ? `Failed step: ${failed.label}${failed.error ? ` — ${failed.error}` : ''}` : '';
  ui.failedStep.dataset.step = failed?.step ?? '';
}

/**
 * "What porthole checked": the operator's line for what the page says, the failed start step, and
 * the hop list of the latest failure's diagnosis while the viewer is trying to get back.
 */
function drawDiagnosis(phase: ConnectionPhase = phases.phase): void {
  const diagnosis = handle.diagnosis;
  const isHopsShown = diagnosis !== null && (phase === 'reconnecting' || phase === 'connecting');
  ui.diagnosisHops.hidden = !isHopsShown;
  ui.diagnosisSummary.textContent = isHopsShown ? diagnosisSummary(diagnosis) : '';
  ui.diagnosis.hidden = phase === 'connected' || !(isHopsShown || !ui.operatorDetail.hidden || !ui.failedStep.hidden);
  if (diagnosis === null || ui.diagnosis.dataset.at === diagnosis.at) return;
  ui.diagnosis.dataset.at = diagnosis.at;
  ui.diagnosisHops.replaceChildren(hopList(diagnosis));
}

// ---- the embedding app ----

/** Where the viewer shows: framed, the page around it is an app's, so the person is not told to close the page. */
const place: ViewerPlace = { isFramed: window.parent !== window };
/** Framed by an app: the origin it is on, if the page can know it (lib/embed.ts); null when not framed. */
const embedderOrigin = place.isFramed ? embedderOriginOf(query.get(embedQueryParams.embedder), location.ancestorOrigins) : null;
let lastPostedState = '';
let hasPostedOutcome = false;

type OutgoingMessage = ViewerMessage extends infer M ? (M extends ViewerMessage ? Omit<M, 'source' | 'v' | 'sessionId'> : never) : never;

/** Posts to the parent page, to its origin only (never '*'); nothing when that origin is unknown. */
function post(message: OutgoingMessage): void {
  if (embedderOrigin === null) return;
  window.parent.postMessage({ source: viewerMessageSource, v: embedMessagesVersion, sessionId: handle.sessionId, ...message }, embedderOrigin);
}

/** A `state` message when the state, the phase or the sentence changed. */
function postState(sentence: string): void {
  const message = { type: 'state', state: sessionState, phase: phases.phase, sentence, sentenceKey: shown.notice.person.key } as const;
  const key = JSON.stringify(message);
  if (key === lastPostedState) return;
  lastPostedState = key;
  post(message);
}

type Outcome = { type: 'completed'; account: string | null } | { type: 'failed'; code: string } | { type: 'ended'; reason: string | null };

/** How the session ended, once: `completed`, `failed` or `ended`. */
function postOutcome(outcome: Outcome): void {
  if (hasPostedOutcome) return;
  hasPostedOutcome = true;
  if (outcome.type === 'failed') post({ ...outcome, sentence: catalogue.format(shown.notice.person) });
  else post(outcome);
}

function outcomeOf(session: Session): Outcome | undefined {
  if (session.state === 'completed') return { type: 'completed', account: completedAccount(session) };
  if (session.state === 'failed') return { type: 'failed', code: session.reason ?? 'SESSION_FAILED' };
  if (session.state === 'ended') return { type: 'ended', reason: session.reason };
  return undefined;
}

/** Which parts of the chrome are hidden; framed, the dashboard always is (the app owns navigation, and the cookie login would not open there). */
function applyHide(parts: readonly string[]): void {
  const hidden = new Set(parts);
  if (place.isFramed) hidden.add('dashboard');
  document.documentElement.dataset.hide = [...hidden].join(' ');
}

function applyLanguage(lang: string | null): void {
  if (lang !== null) document.documentElement.lang = lang;
}

/** The app's configure message: taken from the parent window alone, and only from the embedder's origin. */
function setUpEmbedding(): void {
  applyLanguage(languageTagOf(query.get(embedQueryParams.lang)));
  applyHide(hideablePartsOf(query.get(embedQueryParams.hide)));
  if (embedderOrigin === null) return;
  window.addEventListener('message', (event) => {
    if (event.source !== window.parent || event.origin !== embedderOrigin) return;
    const configure = configureOf(event.data);
    if (configure === null) return;
    applyLanguage(configure.lang);
    const ignored = [...configure.ignored, ...catalogue.override(configure.strings).map((key) => `strings.${key}`)];
    for (const [name, value] of Object.entries(configure.theme)) document.documentElement.style.setProperty(name, value);
    if (configure.hide !== null) applyHide(configure.hide);
    if (ignored.length > 0) console.warn(`porthole viewer: configure ignored ${ignored.join(', ')}`);
    document.documentElement.dataset.configured = 'true';
    drawLabels();
    drawSteps();
    drawWords();
  });
  post({ type: 'hello' });
}

// ---- API ----

const sessionPath = address ? sessionApiPath(address) : '';

async function getSession(): Promise<Session> {
  const session = await requestJson<Session>(sessionPath, { auth: { ticket: renewer.current } });
  sessionState = session.state;
  return session;
}

/** Every event after `after`, page by page (the server answers at most a page at a time). */
function getEvents(after: number): Promise<SessionEvent[]> {
  return readEventPages(after, (next) => requestJson<SessionEventsPage>(`${sessionPath}/events?after=${next}`, { auth: { ticket: renewer.current } }));
}

/**
 * Asks the server which hop failed, once for this failure. Never awaited: the reconnect goes on by
 * its own clock, and the countdown's sentence picks the cause up on its next tick (every 250 ms).
 * A diagnosis that fails or times out changes nothing: the close code's sentence stays.
 */
function diagnose(failure: number): void {
  requestJson<SessionDiagnosis>(`${sessionPath}/diagnosis`, { auth: { ticket: renewer.current }, timeoutMs: diagnosisTimeoutMs }).then(
    (diagnosis) => {
      if (failure !== failureSeq) return;
      handle.diagnosis = diagnosis;
      diagnosedFailureCause = diagnosedCause(diagnosis);
      document.body.dataset.diagnosedHop = diagnosis.firstFailure?.hop ?? 'none';
      drawDiagnosis();
    },
    () => undefined,
  );
}

/** A new failure, or a connection that reached the desktop: what an older diagnosis said no longer holds. */
function forgetDiagnosis(): void {
  failureSeq++;
  diagnosedFailureCause = null;
  handle.diagnosis = null;
  delete document.body.dataset.diagnosedHop;
  drawDiagnosis();
}

// ---- courses of action ----

/** The end: a sentence and nothing more to try; `outcome` tells the embedding app how the session ended. */
function finish(phase: FinalPhase, notice: Notice, title?: Phrase, outcome?: Outcome): void {
  phases.begin();
  retryNow = null;
  renewer.stop();
  setPhase(phase, notice, title);
  if (outcome) postOutcome(outcome);
  // Only "End session" gets here with the connection still open. The server closes it with the
  // code that says why (4410 SESSION_ENDED), which tests and logs want to see; close it ourselves
  // only if the server does not. The panel already covers the desktop meanwhile.
  const open = connection;
  if (open) window.setTimeout(() => open.disconnect(notice.operator ?? notice.person.key), serverCloseGraceMs);
}

function showTerminal(session: Session): void {
  progress.settle(session.state);
  finish(finalPhaseFor(session.state), sessionNotice(session, place), sessionTitle(session.state), outcomeOf(session));
}

/** A request the server answered with a 4xx: nothing to retry, only a sentence to show. */
function showRefusal(error: ApiError): void {
  const refusal = refusalOf(error);
  if (refusal.outcome) sessionState = refusal.outcome.type === 'failed' ? 'failed' : 'ended';
  finish(refusal.phase, refusal.notice, refusal.title, refusal.outcome);
}

/**
 * Reads the session and does what its state calls for. `cause` is set after a connection closed:
 * then a live session is reconnected after a backoff delay, with the cause in the sentence.
 */
async function proceed(cause: RetryCause | null): Promise<void> {
  const current = phases.begin();
  let session: Session;
  try {
    session = await getSession();
  } catch (error) {
    if (!current.isCurrent) return;
    if (!isRetryable(error)) return showRefusal(error as ApiError);
    return waitThen(
      () => retryableCause(error),
      () => void proceed(cause),
    );
  }
  if (!current.isCurrent) return;
  await act(session, cause, current);
}

async function act(session: Session, cause: RetryCause | null, current: Course): Promise<void> {
  if (isTerminal(session.state)) {
    // The events say which start step failed; worth one more read before the final sentence.
    await getEvents(progress.after).then(
      (events) => progress.apply(events),
      () => undefined,
    );
    if (!current.isCurrent) return;
    return showTerminal(session);
  }
  renewer.start();
  if (session.state === 'starting') return followStartUp();
  if (cause === null) return connect();
  // The diagnosis, when it answers during the wait, says more than the close did; a machine that
  // does not answer is named from the record just read.
  const named = namingHost(cause, session.node?.id);
  waitThen(() => diagnosedFailureCause ?? named, connect);
}

/** Polls the start-up events until the session is ready (then connects) or terminal. */
async function followStartUp(): Promise<void> {
  const current = phases.begin();
  setPhase('starting', say('desktop.starting'));
  let polls = 0;
  let failures = 0;
  while (current.isCurrent) {
    let delayMs = pollIntervalMs;
    try {
      const events = await getEvents(progress.after);
      if (!current.isCurrent) return;
      progress.apply(events);
      // The desktop answers while the sign-in is still being started: show it now (the server lets viewers in from here).
      if (progress.views.some((view) => view.step === 'vnc' && view.state === 'done')) return connect();
      const hasTransition = events.some((event) => event.to !== null);
      if (hasTransition || polls % sessionReadEveryPolls === 0) {
        const session = await getSession();
        if (!current.isCurrent) return;
        if (session.state !== 'starting') return act(session, null, current);
      }
      failures = 0;
      const running = progress.views.find((view) => view.state === 'running');
      setSentence(running ? say('step.running', { step: catalogue.format(phrase(`step.${running.step}`)) }) : say('desktop.starting'));
    } catch (error) {
      if (!current.isCurrent) return;
      if (!isRetryable(error)) return showRefusal(error as ApiError);
      delayMs = reconnectDelayMs(failures++);
      const cause = retryableCause(error);
      setSentence({ person: retryingPhrase(cause, delayMs), operator: cause.operator });
    }
    drawSteps('starting');
    polls++;
    await sleep(delayMs);
  }
}

function connect(): void {
  const current = phases.begin();
  retryNow = null;
  setPhase('connecting', say('desktop.connecting'));
  try {
    const opened: VncConnection = new VncConnection(ui.screen, vncUrl(address!, renewer.current, location.href), {
      onConnected: () => {
        if (!current.isCurrent) return;
        attempt = 0;
        forgetDiagnosis();
        // The server moves a ready session to authenticating as its first viewer connects.
        if (sessionState === 'ready') sessionState = 'authenticating';
        setPhase('connected', say('desktop.connected'));
      },
      onClosed: (close) => {
        // A late close of an older connection must not forget the current one.
        if (connection === opened) {
          connection = null;
          handle.rfb = null;
        }
        closed(close, current);
      },
    });
    connection = opened;
    handle.rfb = opened.rfb;
  } catch (error) {
    connection = null;
    finish('failed', { person: phrase('viewer.cannotConnect'), operator: `The viewer could not open its connection: ${describeApiError(error)}` });
  }
}

function closed(close: VncClose, course: Course): void {
  handle.lastClose = { code: close.code, reason: close.reason };
  document.body.dataset.closeCode = String(close.code);
  document.body.dataset.closeReason = close.reason;
  if (!course.isCurrent) return;
  if (isEnding) {
    closeDuringEnd = { close, course };
    return;
  }

  forgetDiagnosis();
  const action = closeAction(close.code, close.reason, location.origin);
  switch (action.kind) {
    case 'final':
      finish(action.phase, action.notice, action.title);
      return;
    case 'completed':
      sessionState = 'completed';
      return void showCompleted();
    case 'read-session':
      return void readEndedSession(action.fallback, action.phase, action.isFinal ? close.reason : null);
    case 'retry':
      if (isWorthDiagnosing(close.code, close.reason)) diagnose(failureSeq);
      // The page's own cause (a handshake timeout) is more precise than a bare 1005/1006.
      return void proceed(close.cause ? { retryKey: action.cause.retryKey, operator: `${close.cause}. ${action.cause.operator}` } : action.cause);
  }
}

/**
 * After 1000 `completed`: the credential is stored and the sandbox is going away. Says who is
 * connected to what, from the session's record; never reconnects, whatever that read does.
 */
async function showCompleted(): Promise<void> {
  const current = phases.begin();
  renewer.stop();
  setPhase('completed', say('completed.reading'));
  for (let tries = 0; tries < 3; tries++) {
    try {
      const session = await getSession();
      if (!current.isCurrent) return;
      // The close can overtake the record's credential by a moment; the provider alone is worth a wait.
      if (session.state === 'completed' || tries === 2) {
        progress.settle('completed');
        sessionState = 'completed';
        return finish('completed', completedNotice(session, place), phrase('title.completed'), { type: 'completed', account: completedAccount(session) });
      }
    } catch {
      if (!current.isCurrent) return;
    }
    await sleep(500);
    if (!current.isCurrent) return;
  }
  // The record could not be read: who is connected is not known, only that the sign-in completed.
  finish('completed', completedNotice({}, place), phrase('title.completed'), { type: 'completed', account: null });
}

/**
 * After 4410 (or 4424 NODE_LOST, 4409 NODE_FENCED): the server says the session is over; its record
 * says why. `finalCode`: the close that ends it whatever the record says (its machine was lost: the
 * record may not say failed yet, but the desktop is gone); null: a record found alive is reconnected.
 */
async function readEndedSession(fallback: Notice, phase: 'closed' | 'failed', finalCode: string | null): Promise<void> {
  const current = phases.begin();
  setSentence(say('ended.reading'));
  // The record says why (a failure's own sentence); a read that does not answer is tried again twice.
  for (let tries = 0; ; tries++) {
    try {
      const session = await getSession();
      if (!current.isCurrent) return;
      if (isTerminal(session.state)) return act(session, null, current);
      if (finalCode !== null) {
        sessionState = 'failed';
        return finish('failed', failedNotice(finalCode, null, session.node?.id ?? null), undefined, { type: 'failed', code: finalCode });
      }
      // Closed as ended yet alive: trust the state, not the close, and reconnect.
      return act(session, { retryKey: 'connection.lost.retrying', operator: 'The connection was closed as ended, yet the session is alive.' }, current);
    } catch (error) {
      if (!current.isCurrent) return;
      if (tries < 2 && isRetryable(error)) {
        await sleep(500);
        if (!current.isCurrent) return;
        continue;
      }
      sessionState = phase === 'failed' ? 'failed' : 'ended';
      const outcome: Outcome = phase === 'failed' ? { type: 'failed', code: finalCode ?? 'SESSION_FAILED' } : { type: 'ended', reason: null };
      return finish(phase, error instanceof ApiError && error.code === 'SESSION_FAILED' ? failedNotice(error.code, null) : fallback, undefined, outcome);
    }
  }
}

/** Counts down (the sentence says how long), then runs `then`; "Reconnect now" skips the wait. */
function waitThen(causeNow: () => RetryCause, then: () => void): void {
  const current = phases.begin();
  const delayMs = reconnectDelayMs(attempt++);
  const dueAt = Date.now() + delayMs;
  const noticeFor = (remainingMs: number): Notice => {
    const cause = causeNow();
    return { person: retryingPhrase(cause, remainingMs), operator: cause.operator };
  };
  setPhase('reconnecting', noticeFor(delayMs));
  const go = () => {
    if (!current.isCurrent) return;
    retryNow = null;
    then();
  };
  retryNow = go;
  const tick = () => {
    if (!current.isCurrent) return;
    const remainingMs = dueAt - Date.now();
    if (remainingMs <= 0) return go();
    setSentence(noticeFor(remainingMs));
    window.setTimeout(tick, Math.min(250, remainingMs));
  };
  window.setTimeout(tick, Math.min(250, delayMs));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}

// ---- paste ----

let isPasting = false;
/** The sentence a paste put in the status line; put back to the phase's own after a while. */
let pasteSentenceTimer: number | undefined;

/** "Paste" and Ctrl/Cmd+Shift+V: the clipboard if the browser lets the page read it, else a dialog. */
async function paste(): Promise<void> {
  if (!handle.rfb || phases.phase !== 'connected' || isPasting) return;
  let text: string | null = null;
  // Chromium asks once and then remembers; Firefox and Safari (and plain-HTTP pages) refuse or lack
  // readText: the dialog is the way there, and a refusal is not worth a sentence.
  if (window.isSecureContext && typeof navigator.clipboard?.readText === 'function') {
    text = await navigator.clipboard.readText().catch(() => null);
  }
  if (text === null) return openPasteDialog();
  const check = checkPasteText(text);
  if (!check.ok) return sayAboutPaste(check.sentence);
  await typeIntoDesktop(check.text);
}

async function typeIntoDesktop(text: string): Promise<void> {
  const rfb = handle.rfb;
  if (!rfb || phases.phase !== 'connected') return sayAboutPaste(phrase('paste.notConnected'));
  isPasting = true;
  ui.paste.disabled = true;
  document.body.dataset.paste = 'typing';
  sayAboutPaste(phrase('paste.typing'));
  try {
    const typed = await typeText(rfb, text);
    document.body.dataset.paste = 'typed';
    sayAboutPaste(typed === 1 ? phrase('paste.typed.one') : phrase('paste.typed.other', { count: typed }));
  } finally {
    isPasting = false;
    ui.paste.disabled = phases.phase !== 'connected';
    rfb.focus({ preventScroll: true });
  }
}

function sayAboutPaste(sentence: Phrase): void {
  setSentence({ person: sentence, operator: null });
  window.clearTimeout(pasteSentenceTimer);
  const current = phases.current();
  pasteSentenceTimer = window.setTimeout(() => {
    if (current.isCurrent && phases.phase === 'connected') setSentence(say('desktop.connected'));
  }, 6_000);
}

function openPasteDialog(): void {
  ui.pasteText.value = '';
  ui.pasteText.type = 'password';
  ui.pasteShow.checked = false;
  ui.pasteError.textContent = '';
  ui.pasteDialog.showModal();
  ui.pasteText.focus();
}

function setUpPaste(): void {
  ui.paste.addEventListener('click', () => void paste());
  // Captured on window, before noVNC's canvas listener would send the V to the desktop.
  window.addEventListener(
    'keydown',
    (event) => {
      if (!(event.ctrlKey || event.metaKey) || !event.shiftKey || event.code !== 'KeyV') return;
      if (ui.pasteDialog.open) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      void paste();
    },
    { capture: true },
  );
  ui.pasteShow.addEventListener('change', () => {
    ui.pasteText.type = ui.pasteShow.checked ? 'text' : 'password';
  });
  ui.pasteCancel.addEventListener('click', () => ui.pasteDialog.close());
  ui.pasteDialog.addEventListener('close', () => {
    ui.pasteText.value = ''; // a password must not wait in the page's DOM
    handle.rfb?.focus({ preventScroll: true });
  });
  ui.pasteForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const check = checkPasteText(ui.pasteText.value);
    if (!check.ok) {
      ui.pasteError.textContent = catalogue.format(check.sentence);
      ui.pasteText.focus();
      return;
    }
    ui.pasteDialog.close();
    void typeIntoDesktop(check.text);
  });
}

// ---- toolbar ----

async function endSession(): Promise<void> {
  if (isEnding) return;
  isEnding = true;
  closeDuringEnd = null;
  ui.endSession.disabled = true;
  setSentence(say('session.ending'));
  try {
    const session = await requestJson<Session>(sessionPath, { method: 'DELETE', auth: { ticket: renewer.current } });
    if (isTerminal(session.state)) return showTerminal(session);
    // Not over after all (should not happen): follow whatever state it is in.
    isEnding = false;
    void proceed(null);
  } catch (error) {
    isEnding = false;
    ui.endSession.disabled = false;
    const pending = takeCloseDuringEnd();
    if (pending) closed(pending.close, pending.course);
    // Said after any close handling so that it is the sentence left on screen.
    setSentence({ person: phrase('session.endFailed'), operator: `The session could not be ended: ${describeApiError(error)}` });
  }
}

/** A function, not an inline read: TypeScript cannot see that the close handler set it meanwhile. */
function takeCloseDuringEnd(): typeof closeDuringEnd {
  const pending = closeDuringEnd;
  closeDuringEnd = null;
  return pending;
}

function setUpToolbar(): void {
  const shortId = handle.sessionId.length > 12 ? `${handle.sessionId.slice(0, 10)}…` : handle.sessionId;
  ui.sessionId.textContent = shortId;
  ui.sessionId.title = handle.sessionId;
  document.title = `porthole · ${shortId}`;

  ui.endSession.addEventListener('click', () => void endSession());
  setUpPaste();
  ui.reconnectNow.addEventListener('click', () => retryNow?.());

  if (!document.fullscreenEnabled) ui.fullscreen.hidden = true;
  ui.fullscreen.addEventListener('click', () => {
    const request = document.fullscreenElement ? document.exitFullscreen() : document.documentElement.requestFullscreen();
    request.catch((error: unknown) =>
      setSentence({ person: phrase('fullscreen.unavailable'), operator: `Fullscreen is not available here: ${describeApiError(error)}` }),
    );
  });
  document.addEventListener('fullscreenchange', () => {
    const isFull = document.fullscreenElement !== null;
    ui.fullscreen.textContent = catalogue.format(phrase(isFull ? 'label.exitFullscreen' : 'label.fullscreen'));
    ui.fullscreen.setAttribute('aria-pressed', String(isFull));
  });

  // Clicks on the letterbox around the desktop also give it the keyboard.
  ui.screen.addEventListener('click', () => handle.rfb?.focus({ preventScroll: true }));
}

function start(): void {
  setUpEmbedding();
  drawLabels();
  setUpToolbar();
  if (!address) {
    finish('closed', { person: phrase('address.invalid'), operator: 'A viewer address ends in /v1/sessions/<id>/viewer.' }, phrase('title.cannotShow'));
    return;
  }
  if (!initialTicket) {
    finish('closed', ticketNotice('TICKET_MISSING'), phrase('title.cannotShow'));
    return;
  }
  setPhase('starting', say('session.loading'));
  void proceed(null);
}

start();
