// A session's diagnosis (GET /v1/sessions/:id/diagnosis) as the pages show it: the cause the viewer
// gives after a failed connection (a plain sentence for the person, the hop for the operator), and
// the hop list that the viewer's details and the dashboard's Diagnose panel both draw, so that the
// two say the same thing.
//
// Only types come from src/protocol/diagnosis.ts: that module builds zod schemas, which would add
// ≈450 KB to pages that validate nothing. The hop names are pinned to it by the Record types.

import type { DiagnosisHop, HopReport, HopResult, SessionDiagnosis } from '../../protocol/diagnosis.js';
import { h } from './element.js';
import type { RetryCause } from './sentences.js';
import { formatDurationMs } from './time-format.js';

export type { SessionDiagnosis };

/** Hop names as a person reads them in a list (the server's own words are its causes). */
export const hopNames: Record<DiagnosisHop, string> = {
  store: 'Session record',
  node: 'Host (porthole node)',
  driver: 'Sandbox',
  agent: 'Sandbox agent',
  vnc: 'Desktop (VNC)',
  relay: 'Relay',
};

const resultSymbols: Record<HopResult, string> = { ok: '✔', failed: '✘', skipped: '–' };

/** What a failing hop means, for the operator's line; the hop's cause follows in brackets. */
function failureLead(hop: DiagnosisHop, code: string): string {
  switch (hop) {
    case 'store':
      return 'porthole cannot read this session';
    case 'node':
      if (code === 'NODE_LOST') return 'The host running the desktop was lost';
      return 'The host running the desktop does not answer';
    case 'driver':
      return 'The sandbox is not running';
    case 'agent':
      if (code === 'AGENT_UNHEALTHY') return 'The desktop is down';
      if (code === 'AGENT_VERSION_MISMATCH') return 'The sandbox runs another porthole version';
      return 'The sandbox does not answer';
    case 'vnc':
      return 'The desktop does not answer';
    case 'relay':
      return 'porthole’s relay cannot reach the desktop';
  }
}

/** Long causes (five processes down and restarted) are cut in the sentence; the details list has them whole. */
const maxCauseChars = 80;

/**
 * The cause as the sentence quotes it after "<hop>: ": without the hop's name repeated ("agent:
 * agent reports …"), and cut at a clause ("…, …" or "…; …") rather than mid-word when it is long.
 */
function shortCause(hop: DiagnosisHop, cause: string): string {
  const trimmed = cause.startsWith(`${hop} `) ? cause.slice(hop.length + 1) : cause;
  if (trimmed.length <= maxCauseChars) return trimmed;
  const head = trimmed.slice(0, maxCauseChars);
  const cut = Math.max(head.lastIndexOf(', '), head.lastIndexOf('; '));
  return cut > maxCauseChars / 2 ? `${head.slice(0, cut)}, …` : `${head.trimEnd()}…`;
}

/**
 * Why the viewer is reconnecting, as a diagnosis tells it. The person hears only that the desktop
 * does not answer (or that the connection was lost); the operator line keeps the failing hop and
 * its cause ("The desktop does not answer (vnc: ECONNREFUSED on …/run/vnc.sock)") — or, when every
 * hop answers, that the connection dropped. Null when the diagnosis decides nothing (the session is
 * over or still starting: hops skipped without a failure); the close code's own cause stays then.
 */
export function diagnosedCause(diagnosis: SessionDiagnosis): RetryCause | null {
  const failure = diagnosis.firstFailure;
  if (failure?.hop === 'node') {
    // The machine the desktop runs on, by name when the hop read it.
    const host = diagnosis.hops.find((hop) => hop.hop === 'node')?.details.nodeId;
    const operator = `${failureLead(failure.hop, failure.code)} (${failure.hop}: ${shortCause(failure.hop, failure.cause)})`;
    return typeof host === 'string'
      ? { retryKey: 'host.unreachable.named.retrying', operator, params: { host } }
      : { retryKey: 'host.unreachable.retrying', operator };
  }
  if (failure) {
    return {
      retryKey: 'desktop.unreachable.retrying',
      operator: `${failureLead(failure.hop, failure.code)} (${failure.hop}: ${shortCause(failure.hop, failure.cause)})`,
    };
  }
  if (diagnosis.hops.length > 0 && diagnosis.hops.every((hop) => hop.result === 'ok')) {
    return { retryKey: 'connection.lost.retrying', operator: 'The connection dropped, though every hop to the desktop answers now' };
  }
  return null;
}

/** "first failure: agent (AGENT_UNHEALTHY)" or "every hop answers", with the walk's time. */
export function diagnosisSummary(diagnosis: SessionDiagnosis): string {
  const failure = diagnosis.firstFailure;
  const verdict = failure
    ? `first failure: ${failure.hop} (${failure.code})`
    : diagnosis.hops.every((hop) => hop.result === 'ok')
      ? 'every hop answers'
      : 'nothing failed; some hops were not checked';
  return `${verdict} · ${formatDurationMs(diagnosis.ms)}`;
}

function hopItem(report: HopReport, isFirstFailure: boolean): HTMLLIElement {
  return h(
    'li',
    {
      class: 'hop',
      'data-hop': report.hop,
      'data-result': report.result,
      'data-first-failure': isFirstFailure ? 'true' : undefined,
    },
    h('span', { class: 'hop-symbol', 'aria-hidden': 'true' }, resultSymbols[report.result]),
    h('span', { class: 'hop-name', title: report.hop }, hopNames[report.hop] ?? report.hop),
    h('span', { class: 'hop-result' }, report.result),
    h('span', { class: 'hop-ms' }, report.result === 'skipped' ? '—' : formatDurationMs(report.ms)),
    h('span', { class: 'hop-cause' }, report.code ? h('code', {}, report.code) : null, report.code ? ' ' : null, report.cause),
  );
}

/** The hops in the order they were walked, each with its result, time and cause; the first failure marked. */
export function hopList(diagnosis: SessionDiagnosis): HTMLOListElement {
  const failing = diagnosis.firstFailure?.hop ?? null;
  return h('ol', { class: 'hops' }, ...diagnosis.hops.map((report) => hopItem(report, report.hop === failing)));
}
