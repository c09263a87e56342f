// The start-up checklist: folds the session's step.* events into one line per start step (pending,
// running, done with its time, failed with its error) and draws it. A session is only called ready
// after every hop answered, so showing the hops one by one tells the person where a slow or failed
// start is stuck.

import { startStepLabels, startStepNote, startSteps } from '../../protocol/session-states.js';
import type { SessionEvent, SessionState, StartStep } from '../../protocol/session.js';
import { h } from './element.js';
import { formatDurationMs } from './time-format.js';

/** `stopped`: the session ended (not failed) while this step was still running. */
export type StepState = 'pending' | 'running' | 'done' | 'failed' | 'stopped';

export interface StepView {
  step: StartStep;
  label: string;
  state: StepState;
  /** Server time the step started, for the running clock. */
  startedAt: string | null;
  ms: number | null;
  error: string | null;
  /** What the step's event adds (warm or cold), or null. */
  note: string | null;
}

function isStartStep(value: unknown): value is StartStep {
  return typeof value === 'string' && (startSteps as readonly string[]).includes(value);
}

/** details.error is a sentence, or an {code, message} object from an AppError. */
function errorText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const { message, code } = value as { message?: unknown; code?: unknown };
    if (typeof message === 'string') return typeof code === 'string' ? `${message} (${code})` : message;
    if (typeof code === 'string') return code;
  }
  return null;
}

export interface RenderOptions {
  labelOf?: (view: StepView) => string;
  /** Whether to show each step's note and error (default true). */
  isForOperator?: boolean;
}

export class StartProgress {
  private readonly steps = new Map<StartStep, StepView>();
  private lastSeq = 0;

  constructor() {
    for (const step of startSteps) {
      this.steps.set(step, { step, label: startStepLabels[step], state: 'pending', startedAt: null, ms: null, error: null, note: null });
    }
  }

  /** The seq to ask for next (`events?after=`). */
  get after(): number {
    return this.lastSeq;
  }

  /** Folds new events in; events already seen (seq ≤ the last one) are ignored, so polls may overlap. */
  apply(events: readonly SessionEvent[]): void {
    for (const event of events) {
      if (event.seq <= this.lastSeq) continue;
      this.lastSeq = event.seq;
      const step = event.details.step;
      if (!isStartStep(step)) continue;
      const view = this.steps.get(step);
      if (!view) continue;
      if (event.type === 'step.started') {
        view.state = 'running';
        view.startedAt = event.at;
        view.error = null;
      } else if (event.type === 'step.succeeded') {
        view.state = 'done';
        const ms = event.details.ms;
        view.ms = typeof ms === 'number' ? ms : null;
        view.note = startStepNote(step, event.details);
      } else if (event.type === 'step.failed') {
        view.state = 'failed';
        view.error = errorText(event.details.error);
        const ms = event.details.ms;
        if (typeof ms === 'number') view.ms = ms;
      }
    }
  }

  /** Once the session is terminal nothing is running any more: freeze the running clocks. */
  settle(state: SessionState): void {
    if (state !== 'failed' && state !== 'ended' && state !== 'completed') return;
    for (const view of this.steps.values()) {
      if (view.state === 'running') view.state = state === 'failed' ? 'failed' : 'stopped';
    }
  }

  get views(): StepView[] {
    return [...this.steps.values()];
  }

  failedStep(): StepView | undefined {
    return this.views.find((view) => view.state === 'failed');
  }

  /**
   * Draws the checklist. The viewer passes `labelOf` (the person's words for each step, from the
   * catalogue) and `isForOperator: false`: step notes and errors name sandboxes, paths and errnos,
   * and go under "What porthole checked" there instead.
   */
  render(list: HTMLElement, now: number = Date.now(), options: RenderOptions = {}): void {
    const labelOf = options.labelOf ?? ((view: StepView) => view.label);
    const isForOperator = options.isForOperator ?? true;
    list.replaceChildren(
      ...this.views.map((view) => {
        let time = '';
        if (view.ms !== null) time = formatDurationMs(view.ms);
        else if (view.state === 'running' && view.startedAt) {
          time = formatDurationMs(Math.max(0, now - Date.parse(view.startedAt)));
        }
        return h(
          'li',
          { 'data-step': view.step, 'data-step-state': view.state, class: 'step' },
          h('span', { class: 'step-icon', 'aria-hidden': 'true' }),
          h('span', { class: 'step-label' }, labelOf(view), isForOperator && view.note ? h('span', { class: 'step-note' }, ` (${view.note})`) : null),
          h('span', { class: 'step-state visually-hidden' }, ` (${view.state})`),
          h('span', { class: 'step-time' }, time),
          isForOperator && view.error ? h('p', { class: 'step-error' }, view.error) : null,
        );
      }),
    );
  }
}
