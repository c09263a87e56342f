// The dashboard (GET /): every session with its state and captured credential, "Connect provider"
// to start one (it opens the viewer in this tab), end it, read its timeline, and diagnose a live one
// (each hop between a viewer and its desktop, the first failing one marked). Authenticated by the
// login cookie that `porthole start`'s link sets. It redraws rows in place every couple of seconds,
// so an open timeline, a diagnosis or a focused button survives the refresh.

import type { ApiKey, WebhookDeliveryView } from '../protocol/apps.js';
import { readEventPages } from '../protocol/event-pages.js';
import type { ProviderName, Session, SessionEvent, SessionEventsPage, TicketResponse } from '../protocol/session.js';
import { ApiError, describeApiError, requestJson } from './lib/api-client.js';
import { h, mustFind } from './lib/element.js';
import { isTerminal, providerLabels, providerNames, startStepLabels, startStepNote } from '../protocol/session-states.js';
import { endReasonLabels, failedSentence, providerLabel, sessionCredential, unverifiedNote } from './lib/sentences.js';
import { diagnosisSummary, hopList, type SessionDiagnosis } from './lib/diagnosis-report.js';
import { formatAgo, formatClock, formatClockMs, formatDurationMs, formatUntil } from './lib/time-format.js';

const refreshIntervalMs = 2_000;
/** Not logged in: keep checking (the person may log in from another tab), but calmly. */
const loggedOutRefreshIntervalMs = 5_000;

const connectLabel = 'Connect';

const loginSentence =
  'You are not logged in to this porthole. Open the login link that “porthole start” printed, or a new one from “porthole login-link”, or log in with an admin API key at /login.';

const ui = {
  newForm: mustFind<HTMLFormElement>('#new-session-form'),
  newProvider: mustFind<HTMLSelectElement>('#new-provider'),
  newSession: mustFind<HTMLButtonElement>('#new-session'),
  logout: mustFind<HTMLButtonElement>('#logout'),
  notice: mustFind('#notice'),
  noticeText: mustFind('#notice-text'),
  noticeDismiss: mustFind<HTMLButtonElement>('#notice-dismiss'),
  summary: mustFind('#summary'),
  table: mustFind<HTMLTableElement>('#sessions'),
  rows: mustFind<HTMLTableSectionElement>('#session-rows'),
  empty: mustFind('#empty'),
  apps: mustFind<HTMLDetailsElement>('#apps'),
  appsSummary: mustFind('#apps-summary'),
  keyRows: mustFind<HTMLTableSectionElement>('#key-rows'),
  deliveryRows: mustFind<HTMLTableSectionElement>('#delivery-rows'),
  noDeliveries: mustFind('#no-deliveries'),
};

interface Timeline {
  row: HTMLTableRowElement;
  body: HTMLTableSectionElement;
  after: number;
  isLoading: boolean;
}

/** A diagnosis shown under its session's row: asked for by "Diagnose", asked again by pressing it again. */
interface DiagnosisPanel {
  row: HTMLTableRowElement;
  summary: HTMLElement;
  body: HTMLElement;
  isLoading: boolean;
}

interface SessionRow {
  session: Session;
  row: HTMLTableRowElement;
  cells: Record<'id' | 'state' | 'provider' | 'credential' | 'user' | 'created' | 'reason', HTMLTableCellElement>;
  open: HTMLButtonElement;
  end: HTMLButtonElement;
  toggle: HTMLButtonElement;
  diagnose: HTMLButtonElement;
  timeline: Timeline | null;
  diagnosis: DiagnosisPanel | null;
}

const rows = new Map<string, SessionRow>();
let refreshTimer: number | undefined;
let isLoggedOut = false;
/** Set while this tab is on its way to a viewer: no more redraws or clicks meanwhile. */
let isLeaving = false;

// ---- notice: the one place errors are said ----

type NoticeSource = 'list' | 'action';
let noticeSource: NoticeSource | null = null;

function showNotice(sentence: string, source: NoticeSource): void {
  noticeSource = source;
  ui.noticeText.textContent = sentence;
  ui.notice.hidden = false;
}

/** A successful list refresh clears a list problem, never the report of a failed action. */
function clearNotice(source: NoticeSource): void {
  if (noticeSource !== source) return;
  noticeSource = null;
  ui.notice.hidden = true;
  ui.noticeText.textContent = '';
}

function sentenceFor(error: unknown, doing: string): string {
  if (error instanceof ApiError && error.status === 401) return loginSentence;
  return `${doing}: ${describeApiError(error)}`;
}

// ---- API ----

const sessionPath = (id: string) => `/v1/sessions/${encodeURIComponent(id)}`;

function listSessions(): Promise<{ sessions: Session[] }> {
  return requestJson('/v1/sessions', { auth: 'cookie' });
}

async function openViewer(id: string): Promise<void> {
  const { viewerUrl } = await requestJson<TicketResponse>(`${sessionPath(id)}/ticket`, {
    method: 'POST',
    auth: 'cookie',
    body: {},
  });
  isLeaving = true;
  // This tab, not a popup: popups get blocked after an await, and one tab per session is calmer.
  location.assign(viewerUrl);
}

// ---- rows ----

function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 10)}…` : id;
}

function providerCell(provider: string | null): Node {
  if (provider === null) return h('span', { class: 'muted' }, 'Desktop only');
  return h('span', { title: provider }, providerLabel(provider));
}

/** The refresher's reason as a sentence ("The provider refused the refresh at … (invalid_grant: …)."). */
function refusalSentence(reason: string | null): string {
  if (!reason) return 'The provider refused porthole’s refresh.';
  return `${reason.charAt(0).toUpperCase()}${reason.slice(1)}${reason.endsWith('.') ? '' : '.'}`;
}

/**
 * Who signed in and until when the access token holds (porthole refreshes it before then); a dash
 * while nothing was captured. A grant the provider refused to refresh says so, with "Sign in again".
 */
function credentialCell(view: SessionRow): Node {
  const session = view.session;
  const credential = sessionCredential(session);
  if (!credential) return h('span', { class: 'muted' }, '—');
  const refreshed = credential.refreshedAt ? ` · refreshed by porthole ${new Date(credential.refreshedAt).toLocaleString()}` : '';
  const captured = `Captured ${new Date(credential.capturedAt).toLocaleString()}${refreshed}`;
  let expiry: Node;
  if (credential.needsLogin) {
    const again = h(
      'button',
      { type: 'button', 'data-action': 'sign-in-again', class: 'primary small', title: 'Start a new session for the same user and provider' },
      'Sign in again',
    );
    again.addEventListener('click', () => void onSignInAgain(view, again));
    expiry = h(
      'span',
      { class: 'needs-login' },
      h('span', { class: 'badge', 'data-state': 'failed', title: credential.refreshError ?? '' }, 'needs sign-in'),
      h('span', { class: 'failure-detail' }, refusalSentence(credential.refreshError)),
      again,
    );
  } else if (credential.expiresAt === null) {
    expiry = h('span', { class: 'muted' }, 'no expiry given');
  } else {
    const isExpired = new Date(credential.expiresAt).getTime() <= Date.now();
    expiry = h(
      'span',
      { class: isExpired ? 'expiry expired' : 'expiry', 'data-expires-at': credential.expiresAt },
      isExpired ? 'expired ' : 'expires ',
      h('time', { datetime: credential.expiresAt, title: new Date(credential.expiresAt).toLocaleString() }, formatClock(credential.expiresAt)),
      h('span', { class: 'ago' }, formatUntil(credential.expiresAt)),
      credential.refreshedAt ? h('span', { class: 'muted refreshed', title: captured }, ' · kept fresh') : null,
    );
  }
  return h(
    'span',
    { class: 'credential', title: captured },
    h('span', { class: 'credential-account' }, credential.account ?? `${providerLabel(credential.provider)} account`),
    credential.isVerified ? null : h('span', { class: 'muted unverified', title: unverifiedNote(credential.provider) }, 'unconfirmed'),
    expiry,
  );
}

function reasonCell(session: Session): Node {
  if (session.state === 'ended' && session.reason) {
    const label = (endReasonLabels as Record<string, string>)[session.reason] ?? session.reason;
    return h('span', {}, label);
  }
  if (session.state === 'failed') {
    return h(
      'span',
      { class: 'failure' },
      session.reason ? h('code', {}, session.reason) : null,
      h('span', { class: 'failure-detail' }, failedSentence(session.reason, session.detail)),
    );
  }
  return h('span', { class: 'muted' }, session.reason ?? '—');
}

function createRow(session: Session): SessionRow {
  const cell = (label: string, isNoWrap = false) => h('td', { 'data-label': label, class: isNoWrap ? 'nowrap' : undefined });
  const cells = {
    id: cell('Session', true),
    state: cell('State', true),
    provider: cell('Provider', true),
    credential: cell('Credential'),
    user: cell('User'),
    created: cell('Created', true),
    reason: cell('Reason'),
  };
  const open = h('button', { type: 'button', 'data-action': 'open', class: 'primary small' }, 'Open');
  const toggle = h('button', { type: 'button', 'data-action': 'timeline', class: 'ghost small', 'aria-expanded': 'false' }, 'Timeline');
  const diagnose = h(
    'button',
    { type: 'button', 'data-action': 'diagnose', class: 'ghost small', title: 'Check each hop between a viewer and this session’s desktop' },
    'Diagnose',
  );
  const end = h('button', { type: 'button', 'data-action': 'end', class: 'danger small' }, 'End');
  const row = h('tr', { 'data-session-id': session.id });
  row.append(...Object.values(cells), h('td', { class: 'actions' }, open, toggle, diagnose, end));
  const view: SessionRow = { session, row, cells, open, end, toggle, diagnose, timeline: null, diagnosis: null };

  open.addEventListener('click', () => void onOpen(view));
  end.addEventListener('click', () => void onEnd(view));
  toggle.addEventListener('click', () => void onToggleTimeline(view));
  diagnose.addEventListener('click', () => void onDiagnose(view));
  return view;
}

/** Writes a session into its row; cells are rewritten only when their content changed. */
function updateRow(view: SessionRow, session: Session): void {
  view.session = session;
  view.row.dataset.state = session.state;
  const set = (cell: HTMLTableCellElement, key: string, content: () => Node) => {
    if (cell.dataset.key === key) return;
    cell.dataset.key = key;
    cell.replaceChildren(content());
  };
  // The host (porthole node) under the id: which machine to look at when a session misbehaves.
  const node = session.node;
  set(view.cells.id, `${session.id}|${node?.id}|${node?.generation}`, () =>
    h(
      'span',
      {},
      h('code', { title: session.id }, shortId(session.id)),
      node
        ? h('span', { class: 'muted node', 'data-node': node.id, title: `Runs on the porthole node ${node.id}, generation ${node.generation}` }, node.id)
        : null,
    ),
  );
  set(view.cells.state, session.state, () => h('span', { class: 'badge', 'data-state': session.state }, session.state));
  set(view.cells.provider, String(session.provider), () => providerCell(session.provider));
  const credential = sessionCredential(session);
  // Keyed on the relative expiry too, which changes as time passes.
  const credentialKey = credential
    ? `${credential.account}|${credential.isVerified}|${credential.expiresAt}|${credential.expiresAt ? formatUntil(credential.expiresAt) : ''}|${credential.needsLogin}|${credential.refreshedAt}`
    : '-';
  set(view.cells.credential, credentialKey, () => credentialCell(view));
  set(view.cells.user, String(session.userId), () => (session.userId === null ? h('span', { class: 'muted' }, '—') : document.createTextNode(session.userId)));
  // Relative time changes as time passes, so this one is keyed on its text.
  const ago = formatAgo(session.createdAt);
  set(view.cells.created, ago, () =>
    h(
      'time',
      { datetime: session.createdAt, title: new Date(session.createdAt).toLocaleString() },
      formatClock(session.createdAt),
      h('span', { class: 'ago' }, ago),
    ),
  );
  set(view.cells.reason, `${session.state}|${session.reason}|${session.detail}`, () => reasonCell(session));

  const isOver = isTerminal(session.state);
  view.open.disabled = isOver;
  view.open.title = isOver ? 'The session is over; its timeline tells what happened.' : 'Open its desktop in this tab';
  if (view.end.dataset.busy !== 'true') view.end.disabled = isOver;
  // Only a live session has hops to walk; a diagnosis already shown stays as it was.
  view.diagnose.hidden = isOver;
  view.diagnose.disabled = isOver || view.diagnosis?.isLoading === true;
}

function render(sessions: Session[]): void {
  const seen = new Set<string>();
  const order: HTMLTableRowElement[] = [];
  for (const session of sessions) {
    seen.add(session.id);
    let view = rows.get(session.id);
    if (!view) {
      view = createRow(session);
      rows.set(session.id, view);
    }
    updateRow(view, session);
    order.push(view.row);
    if (view.timeline) order.push(view.timeline.row);
    if (view.diagnosis) order.push(view.diagnosis.row);
  }
  for (const [id] of rows) if (!seen.has(id)) rows.delete(id);

  // Moving a row that holds focus would drop the focus: only reorder when the order changed.
  const current = [...ui.rows.children];
  if (current.length !== order.length || current.some((row, index) => row !== order[index])) {
    ui.rows.replaceChildren(...order);
  }
  ui.empty.hidden = sessions.length > 0;
  ui.table.hidden = sessions.length === 0;

  const live = sessions.filter((session) => !isTerminal(session.state)).length;
  const count = `${sessions.length} session${sessions.length === 1 ? '' : 's'}, ${live} live`;
  ui.summary.textContent = `${count} · updated ${formatClock(new Date().toISOString())}`;
}

// ---- timelines ----

function createTimeline(sessionId: string): Timeline {
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'timeline-table' },
    h(
      'thead',
      {},
      h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Event'), h('th', {}, 'State'), h('th', {}, 'Reason'), h('th', {}, 'Step'), h('th', {}, 'Took / error')),
    ),
    body,
  );
  const row = h('tr', { class: 'timeline-row', 'data-timeline-for': sessionId }, h('td', { colspan: '8' }, h('div', { class: 'timeline' }, table)));
  body.append(h('tr', { class: 'timeline-empty' }, h('td', { colspan: '6' }, 'Loading events…')));
  return { row, body, after: 0, isLoading: false };
}

function eventRow(event: SessionEvent): HTMLTableRowElement {
  const { step, ms, error, warm, ...rest } = event.details;
  const note = startStepNote(step, event.details);
  const stepLabel = typeof step === 'string' ? ((startStepLabels as Record<string, string>)[step] ?? step) : '';
  let outcome: Node | null = null;
  if (error !== undefined) {
    const text = typeof error === 'string' ? error : JSON.stringify(error);
    outcome = h('span', { class: 'failure-detail' }, text);
  } else if (typeof ms === 'number') {
    outcome = document.createTextNode(`${formatDurationMs(ms)}${note ? ` (${note})` : ''}`);
  }
  // Anything else the server attached is shown as is: it is there to explain something.
  const extra = Object.entries(rest).map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return h(
    'tr',
    { 'data-seq': String(event.seq), 'data-type': event.type },
    h('td', {}, h('time', { datetime: event.at }, formatClockMs(event.at))),
    h('td', {}, h('code', {}, event.type)),
    h('td', {}, event.to ? `${event.from ? `${event.from} → ` : '→ '}${event.to}` : ''),
    h('td', {}, event.reason ?? ''),
    h('td', { title: typeof step === 'string' ? step : undefined }, stepLabel),
    h('td', {}, outcome, extra.length ? h('span', { class: 'muted extra' }, extra.join(' ')) : null),
  );
}

async function loadTimeline(view: SessionRow): Promise<void> {
  const timeline = view.timeline;
  if (!timeline || timeline.isLoading) return;
  timeline.isLoading = true;
  try {
    const events = await readEventPages(timeline.after, (next) =>
      requestJson<SessionEventsPage>(`${sessionPath(view.session.id)}/events?after=${next}`, { auth: 'cookie' }),
    );
    const fresh = events.filter((event) => event.seq > timeline.after);
    if (timeline.after === 0) timeline.body.replaceChildren();
    if (fresh.length > 0) {
      timeline.body.append(...fresh.map(eventRow));
      timeline.after = fresh[fresh.length - 1]?.seq ?? timeline.after;
    }
    if (timeline.body.children.length === 0) {
      timeline.body.append(h('tr', { class: 'timeline-empty' }, h('td', { colspan: '6' }, 'No events yet.')));
    }
  } catch (error) {
    showNotice(sentenceFor(error, `Could not read the timeline of ${view.session.id}`), 'action');
  } finally {
    timeline.isLoading = false;
  }
}

async function onToggleTimeline(view: SessionRow): Promise<void> {
  if (view.timeline) {
    view.timeline.row.remove();
    view.timeline = null;
    view.toggle.setAttribute('aria-expanded', 'false');
    return;
  }
  view.timeline = createTimeline(view.session.id);
  view.row.after(view.timeline.row);
  view.toggle.setAttribute('aria-expanded', 'true');
  await loadTimeline(view);
}

// ---- diagnosis ----

function createDiagnosisPanel(view: SessionRow): DiagnosisPanel {
  const summary = h('p', { class: 'diagnosis-summary' }, 'Diagnosing…');
  const body = h('div', { class: 'diagnosis-hops' });
  const hide = h('button', { type: 'button', class: 'ghost small', 'data-action': 'hide-diagnosis' }, 'Hide');
  const row = h(
    'tr',
    { class: 'diagnosis-row', 'data-diagnosis-for': view.session.id },
    h('td', { colspan: '8' }, h('div', { class: 'diagnosis-head' }, h('strong', {}, 'Diagnosis'), summary, hide), body),
  );
  hide.addEventListener('click', () => {
    row.remove();
    view.diagnosis = null;
    view.diagnose.setAttribute('aria-expanded', 'false');
  });
  return { row, summary, body, isLoading: false };
}

function drawDiagnosis(panel: DiagnosisPanel, diagnosis: SessionDiagnosis): void {
  const verdict = diagnosis.firstFailure ? 'failed' : 'ok';
  panel.row.dataset.verdict = verdict;
  panel.row.dataset.firstFailure = diagnosis.firstFailure?.hop ?? '';
  panel.summary.textContent = `${formatClock(diagnosis.at)} · ${diagnosisSummary(diagnosis)}`;
  panel.body.replaceChildren(hopList(diagnosis));
}

/** Walks the session's hops (a few ms when all answer, up to a few seconds when one times out). */
async function onDiagnose(view: SessionRow): Promise<void> {
  if (!view.diagnosis) {
    view.diagnosis = createDiagnosisPanel(view);
    (view.timeline?.row ?? view.row).after(view.diagnosis.row);
    view.diagnose.setAttribute('aria-expanded', 'true');
  }
  const panel = view.diagnosis;
  if (panel.isLoading) return;
  panel.isLoading = true;
  view.diagnose.disabled = true;
  panel.row.dataset.verdict = 'loading';
  panel.summary.textContent = 'Diagnosing…';
  try {
    // The server gives each probing hop 3 s and stops at the first failure.
    const diagnosis = await requestJson<SessionDiagnosis>(`${sessionPath(view.session.id)}/diagnosis`, { auth: 'cookie', timeoutMs: 15_000 });
    drawDiagnosis(panel, diagnosis);
  } catch (error) {
    panel.row.dataset.verdict = 'error';
    panel.summary.textContent = sentenceFor(error, 'The diagnosis did not answer');
  } finally {
    panel.isLoading = false;
    view.diagnose.disabled = isTerminal(view.session.state);
  }
}

// ---- actions ----

async function onOpen(view: SessionRow): Promise<void> {
  if (isLeaving) return;
  view.open.disabled = true;
  try {
    await openViewer(view.session.id);
  } catch (error) {
    view.open.disabled = isTerminal(view.session.state);
    showNotice(sentenceFor(error, `Could not open ${view.session.id}`), 'action');
  }
}

async function onEnd(view: SessionRow): Promise<void> {
  view.end.disabled = true;
  view.end.dataset.busy = 'true';
  try {
    const session = await requestJson<Session>(sessionPath(view.session.id), { method: 'DELETE', auth: 'cookie' });
    delete view.end.dataset.busy;
    updateRow(view, session);
    if (view.timeline) await loadTimeline(view);
  } catch (error) {
    delete view.end.dataset.busy;
    view.end.disabled = isTerminal(view.session.state);
    showNotice(sentenceFor(error, `Could not end ${view.session.id}`), 'action');
  }
}

/** A new session for the same user and provider (owned by the same app), opened here. */
async function onSignInAgain(view: SessionRow, button: HTMLButtonElement): Promise<void> {
  if (isLeaving) return;
  button.disabled = true;
  button.textContent = 'Starting…';
  try {
    const created = await requestJson<Session>(`${sessionPath(view.session.id)}/sign-in-again`, { method: 'POST', auth: 'cookie' });
    await openViewer(created.id);
  } catch (error) {
    button.disabled = false;
    button.textContent = 'Sign in again';
    showNotice(sentenceFor(error, `Could not start a new sign-in for ${view.session.userId ?? view.session.id}`), 'action');
    void refresh();
  }
}

async function onNewSession(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  if (isLeaving || ui.newSession.disabled) return;
  const provider = ui.newProvider.value;
  ui.newSession.disabled = true;
  ui.newSession.textContent = 'Starting…';
  let created: Session | null = null;
  try {
    created = await requestJson<Session>('/v1/sessions', {
      method: 'POST',
      auth: 'cookie',
      body: provider ? { provider } : {},
    });
    await openViewer(created.id);
  } catch (error) {
    ui.newSession.disabled = false;
    ui.newSession.textContent = connectLabel;
    const doing = created ? `Session ${created.id} was created but could not be opened` : 'Could not create a session';
    showNotice(sentenceFor(error, doing), 'action');
    void refresh();
  }
}

// ---- log out ----

/** Ends this browser's login (the server clears the cookie and refuses it from now on), then shows the page as a stranger sees it. */
async function onLogout(): Promise<void> {
  ui.logout.disabled = true;
  try {
    await requestJson('/logout', { method: 'POST', auth: 'cookie' });
    isLeaving = true;
    location.assign('/');
  } catch (error) {
    showNotice(sentenceFor(error, 'Could not log out'), 'action');
    ui.logout.disabled = false;
  }
}

// ---- apps: their keys and the webhook log, read while the section is open ----

async function refreshApps(): Promise<void> {
  const [{ keys }, { deliveries }] = await Promise.all([
    requestJson<{ keys: ApiKey[] }>('/v1/keys', { auth: 'cookie' }),
    requestJson<{ deliveries: WebhookDeliveryView[] }>('/v1/webhooks/deliveries?limit=50', { auth: 'cookie' }),
  ]);
  ui.keyRows.replaceChildren(
    ...keys.map((k) =>
      h(
        'tr',
        { class: k.revokedAt ? 'muted' : undefined },
        h('td', {}, k.name),
        h('td', {}, h('code', {}, k.id)),
        h('td', {}, k.admin ? 'admin' : 'app'),
        h('td', {}, k.webhookUrl ?? '—'),
        h('td', {}, h('time', { datetime: k.createdAt, title: k.createdAt }, formatAgo(k.createdAt))),
        h('td', {}, k.revokedAt ? h('time', { datetime: k.revokedAt, title: k.revokedAt }, formatAgo(k.revokedAt)) : '—'),
      ),
    ),
  );
  ui.deliveryRows.replaceChildren(
    ...deliveries.map((d) => {
      const answer = d.state === 'delivered' ? `HTTP ${d.lastStatus}` : (d.lastError ?? 'not tried yet');
      const state = d.state === 'pending' && d.nextAttemptAt ? `retrying ${formatUntil(d.nextAttemptAt)}` : d.state;
      return h(
        'tr',
        { 'data-state': d.state },
        h('td', {}, h('code', {}, d.type)),
        h('td', {}, h('code', { title: d.sessionId }, shortId(d.sessionId))),
        h('td', {}, d.url),
        h('td', {}, h('span', { class: `delivery-state ${d.state}` }, state)),
        h('td', {}, String(d.attempts)),
        h('td', {}, answer),
        h('td', {}, h('time', { datetime: d.createdAt, title: d.createdAt }, formatAgo(d.createdAt))),
      );
    }),
  );
  ui.noDeliveries.hidden = deliveries.length > 0;
  const failing = deliveries.filter((d) => d.state !== 'delivered' && d.attempts > 0).length;
  ui.appsSummary.textContent = `· ${keys.filter((k) => !k.revokedAt).length} key(s)${failing > 0 ? ` · ${failing} webhook(s) not delivered` : ''}`;
}

// ---- refresh loop ----

async function refresh(): Promise<void> {
  window.clearTimeout(refreshTimer);
  if (isLeaving) return;
  try {
    const { sessions } = await listSessions();
    if (isLeaving) return;
    isLoggedOut = false;
    clearNotice('list');
    document.body.dataset.auth = 'ok';
    render(sessions);
    await Promise.all([...rows.values()].filter((view) => view.timeline).map((view) => loadTimeline(view)));
    if (ui.apps.open) await refreshApps();
  } catch (error) {
    isLoggedOut = error instanceof ApiError && error.status === 401;
    document.body.dataset.auth = isLoggedOut ? 'logged-out' : 'error';
    const sentence =
      error instanceof ApiError && error.code === 'NETWORK'
        ? `${error.message} The list refreshes by itself when it answers again.`
        : sentenceFor(error, 'Could not list the sessions');
    showNotice(sentence, 'list');
    // Rows already shown stay, better stale than blank; this line says they are stale.
    ui.summary.textContent = isLoggedOut
      ? 'Not logged in.'
      : rows.size > 0
        ? `Showing the list as of its last refresh; retrying every ${refreshIntervalMs / 1000} s.`
        : 'The list could not be loaded yet.';
  } finally {
    if (!isLeaving) {
      refreshTimer = window.setTimeout(() => void refresh(), isLoggedOut ? loggedOutRefreshIntervalMs : refreshIntervalMs);
    }
  }
}

function start(): void {
  // The providers first, the porthole demo leading; a bare desktop (no sign-in) last.
  ui.newProvider.replaceChildren(
    ...providerNames.map((name: ProviderName) => h('option', { value: name }, providerLabels[name])),
    h('option', { value: '' }, 'Desktop only (no sign-in)'),
  );
  ui.newProvider.value = providerNames[0];
  ui.newForm.addEventListener('submit', (event) => void onNewSession(event));
  ui.logout.addEventListener('click', () => void onLogout());
  ui.apps.addEventListener('toggle', () => {
    if (ui.apps.open) void refreshApps().catch((error: unknown) => showNotice(sentenceFor(error, 'Could not load the apps'), 'action'));
  });
  ui.noticeDismiss.addEventListener('click', () => {
    noticeSource = null;
    ui.notice.hidden = true;
  });
  // A tab coming back from the background should not show a list that is minutes old.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') void refresh();
  });
  // Back/forward cache: the page returns with isLeaving set from the navigation it made.
  window.addEventListener('pageshow', (event) => {
    if (!event.persisted) return;
    isLeaving = false;
    ui.newSession.disabled = false;
    ui.newSession.textContent = connectLabel;
    void refresh();
  });
  void refresh();
}

start();
