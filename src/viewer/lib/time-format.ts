// How times read on the pages: durations as "1.2 s", clock times in the person's own zone.

export function formatDurationMs(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.floor((ms % 60_000) / 1_000)} s`;
}

/** 14:03:07 today, or "12 Mar 14:03" on another day. */
export function formatClock(iso: string, now: Date = new Date()): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const time = at.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (at.toDateString() === now.toDateString()) return time;
  return `${at.toLocaleDateString(undefined, { day: 'numeric', month: 'short' })} ${time}`;
}

/** Clock time with milliseconds, for a timeline where steps are a few hundred ms apart. */
export function formatClockMs(iso: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const time = at.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  return `${time}.${String(at.getMilliseconds()).padStart(3, '0')}`;
}

/** "just now", "42 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function formatAgo(iso: string, now: number = Date.now()): string {
  const ms = now - new Date(iso).getTime();
  if (!Number.isFinite(ms)) return iso;
  if (ms < 5_000) return 'just now';
  if (ms < 60_000) return `${Math.floor(ms / 1_000)} s ago`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ago`;
  return `${Math.floor(ms / 86_400_000)} d ago`;
}

/** "in 42 min", "in 3 h", "in 2 d" — or, once past, "2 h ago". */
export function formatUntil(iso: string, now: number = Date.now()): string {
  const ms = new Date(iso).getTime() - now;
  if (!Number.isFinite(ms)) return iso;
  if (ms <= 0) return formatAgo(iso, now);
  if (ms < 60_000) return `in ${Math.max(1, Math.floor(ms / 1_000))} s`;
  if (ms < 3_600_000) return `in ${Math.floor(ms / 60_000)} min`;
  if (ms < 86_400_000) return `in ${Math.floor(ms / 3_600_000)} h`;
  return `in ${Math.floor(ms / 86_400_000)} d`;
}
