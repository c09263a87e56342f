import type { SessionDiagnosis } from '../protocol/diagnosis.js';

// `porthole sessions diagnose <id>` prints the server's per-hop diagnosis of a session
// (src/server/sessions/diagnosis.ts walks the hops; the viewer's dashboard shows the same answer).

const hopMarks = { ok: '✔', failed: '✘', skipped: '–' } as const;

/** A session's diagnosis, one line per hop: `✔ agent   12 ms  healthy, version 0.1.0`. */
export function formatDiagnosis(diagnosis: SessionDiagnosis): string[] {
  const lines = [`session ${diagnosis.sessionId} (${diagnosis.state ?? 'state unknown'}), server ${diagnosis.serverVersion}, ${diagnosis.ms} ms`];
  for (const hop of diagnosis.hops) {
    const ms = hop.result === 'skipped' ? '   –   ' : `${String(hop.ms).padStart(4)} ms`;
    lines.push(`${hopMarks[hop.result]} ${hop.hop.padEnd(6)}${ms}  ${hop.cause}`);
  }
  if (diagnosis.firstFailure) lines.push(`first failure: ${diagnosis.firstFailure.hop} (${diagnosis.firstFailure.code})`);
  const { allowed, refused } = diagnosis.egress;
  if (refused.length > 0) {
    const list = refused.map((r) => `${r.host}:${r.port} (${r.reason}${r.count > 1 ? ` ×${r.count}` : ''})`).join(', ');
    lines.push(`egress: ${allowed} allowed; refused ${list}`);
  }
  return lines;
}
