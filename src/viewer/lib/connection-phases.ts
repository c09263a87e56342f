// The viewer's connection phases: one object holds the phase, and the page changes it only through
// `moveTo`, which checks the move against the table below, logs it and tells the listeners (the
// viewer sets `body[data-phase]` from them; tests and styles read that attribute). Modelled on
// noVNC's `_updateConnectionState` (core/rfb.js): an impossible move is refused and logged, and a
// final phase is permanent.
//
// The same object also says which course of action owns the page. Following start-up, one
// connection, a wait before reconnecting and the final sentence are each a course; `begin()` starts
// one and makes every earlier one stale, so a timer or request that answers late sees that and does
// nothing: two loops never fight over the page.
//
// Pure: no DOM, so node tests import it (test/viewer/connection-phases.test.ts).

import type { SessionState } from '../../protocol/session-states.js';

/** The values of `body[data-phase]`: the e2e tests and porthole.css match these strings. */
export const connectionPhases = ['starting', 'connecting', 'connected', 'reconnecting', 'closed', 'failed', 'completed'] as const;
export type ConnectionPhase = (typeof connectionPhases)[number];

/** Nothing more to try: the page shows a sentence and stays. */
export const finalPhases = ['closed', 'failed', 'completed'] as const satisfies readonly ConnectionPhase[];
export type FinalPhase = (typeof finalPhases)[number];

/** The page's first phase (viewer.html starts with `data-phase="starting"`: reading the session). */
export const initialPhase: ConnectionPhase = 'starting';

/**
 * The one table of moves between different phases. Staying in a phase (a new sentence, another
 * countdown, the completed account read) is always allowed and is not a move. Why each is possible:
 * - starting: the session is read (at page load, after a reconnect wait, when a close asked to read
 *   it) and found still starting.
 * - connecting: the session is live; a new connection opens (after start-up, after a wait, or at
 *   once when nothing failed).
 * - connected: only the connection being opened reaches the desktop.
 * - reconnecting: a connection closed or a read failed, and the session may still be alive.
 * - closed / failed / completed: the session is over, or the page cannot show it.
 */
export const phaseMoves: Readonly<Record<ConnectionPhase, readonly ConnectionPhase[]>> = {
  starting: ['connecting', 'reconnecting', 'closed', 'failed', 'completed'],
  connecting: ['starting', 'connected', 'reconnecting', 'closed', 'failed', 'completed'],
  connected: ['starting', 'connecting', 'reconnecting', 'closed', 'failed', 'completed'],
  reconnecting: ['starting', 'connecting', 'closed', 'failed', 'completed'],
  closed: [],
  failed: [],
  completed: [],
};

export function isFinalPhase(phase: ConnectionPhase): phase is FinalPhase {
  return (finalPhases as readonly ConnectionPhase[]).includes(phase);
}

/** Whether the page may go from `from` to `to`: a listed move, or staying where it is. */
export function canMove(from: ConnectionPhase, to: ConnectionPhase): boolean {
  return from === to || phaseMoves[from].includes(to);
}

/** The final phase that shows a session in a terminal state. */
export function finalPhaseFor(state: SessionState): FinalPhase {
  if (state === 'failed') return 'failed';
  if (state === 'completed') return 'completed';
  return 'closed';
}

export interface PhaseMove {
  from: ConnectionPhase;
  to: ConnectionPhase;
}

/** A course of action; stale once a newer one began. */
export interface Course {
  readonly isCurrent: boolean;
}

export interface ConnectionPhasesOptions {
  initial?: ConnectionPhase;
  /** One line per move, and one per refused move (`isRefused`). The viewer writes them to the console. */
  log?: (line: string, isRefused: boolean) => void;
}

export class ConnectionPhases {
  #phase: ConnectionPhase;
  #course = 0;
  readonly #listeners = new Set<(move: PhaseMove) => void>();
  readonly #log: (line: string, isRefused: boolean) => void;

  constructor(options: ConnectionPhasesOptions = {}) {
    this.#phase = options.initial ?? initialPhase;
    this.#log = options.log ?? (() => undefined);
  }

  get phase(): ConnectionPhase {
    return this.#phase;
  }

  get isFinal(): boolean {
    return isFinalPhase(this.#phase);
  }

  /**
   * Moves to `to`. Returns true when the page is in `to` afterwards (moved, or stayed: listeners
   * hear only real moves); false, logged and nothing changed when the table does not allow it — a
   * final phase never changes. Never throws: a refused move is a bug to see, not a page to break.
   */
  moveTo(to: ConnectionPhase): boolean {
    const from = this.#phase;
    if (from === to) return true;
    if (!canMove(from, to)) {
      this.#log(`viewer phase: refused ${from} → ${to}${isFinalPhase(from) ? ` (${from} is final)` : ''}`, true);
      return false;
    }
    this.#phase = to;
    this.#log(`viewer phase: ${from} → ${to}`, false);
    for (const listener of this.#listeners) listener({ from, to });
    return true;
  }

  /** Calls `listener` after each move. Returns a function that removes it. */
  onMove(listener: (move: PhaseMove) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts a course of action; every course begun before is stale from now on. */
  begin(): Course {
    return this.#courseOf(++this.#course);
  }

  /** The course under way, without starting one (for a timer that only touches what it owns). */
  current(): Course {
    return this.#courseOf(this.#course);
  }

  #courseOf(id: number): Course {
    const phases = this;
    return {
      get isCurrent() {
        return id === phases.#course;
      },
    };
  }
}
