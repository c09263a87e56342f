import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newSessionId } from '../../src/protocol/ids.js';
import { startStepNote, type SessionEvent } from '../../src/protocol/session.js';
import { StartProgress } from '../../src/viewer/lib/start-progress.js';

// The start-up checklist folds step events into one line per step; the sandbox step says whether
// the desktop came warm from the pool or was started cold, as the dashboard and the CLI say it.

const sessionId = newSessionId();
let seq = 0;
const event = (type: SessionEvent['type'], details: Record<string, unknown>): SessionEvent => ({
  seq: ++seq,
  sessionId,
  type,
  from: null,
  to: null,
  reason: null,
  details,
  at: new Date().toISOString(),
});

test('a warm sandbox step is done with its time and says warm; the other steps say nothing more', () => {
  const progress = new StartProgress();
  progress.apply([
    event('step.started', { step: 'sandbox' }),
    event('step.succeeded', { step: 'sandbox', ms: 12, warm: true }),
    event('step.started', { step: 'agent' }),
    event('step.succeeded', { step: 'agent', ms: 3 }),
  ]);
  const [sandbox, agent, vnc] = progress.views;
  assert.deepEqual([sandbox?.state, sandbox?.ms, sandbox?.note], ['done', 12, 'warm: a desktop started ahead']);
  assert.deepEqual([agent?.state, agent?.ms, agent?.note], ['done', 3, null]);
  assert.equal(vnc?.state, 'pending');
});

test('a cold sandbox step says cold; an event from before the warm pool (no warm field) says nothing', () => {
  assert.equal(startStepNote('sandbox', { ms: 900, warm: false }), 'cold: started for this session');
  assert.equal(startStepNote('sandbox', { ms: 900 }), null);
  assert.equal(startStepNote('agent', { ms: 5, warm: true }), null);
});
