import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canTransition, endReasons, eventTypes, sessionStates, startSteps, terminalStates, transitions } from '../../src/protocol/session.js';

// These strings are persisted: changing one needs a migration, so this test pins them.
test('persisted enum strings are pinned', () => {
  assert.deepEqual([...sessionStates], ['starting', 'ready', 'authenticating', 'completed', 'failed', 'ended']);
  assert.deepEqual([...endReasons], ['user', 'idle_timeout', 'max_lifetime', 'sandbox_exited', 'shutdown']);
  assert.deepEqual([...startSteps], ['sandbox', 'agent', 'vnc', 'login']);
  assert.ok(eventTypes.includes('session.ready') && eventTypes.includes('step.failed'));
});

test('the transition table is pinned', () => {
  assert.deepEqual(transitions, {
    starting: ['ready', 'failed', 'ended'],
    ready: ['authenticating', 'completed', 'failed', 'ended'],
    authenticating: ['ready', 'completed', 'failed', 'ended'],
    completed: [],
    failed: [],
    ended: [],
  });
});

test('terminal states are permanent and everything else can end', () => {
  for (const from of sessionStates) {
    for (const to of sessionStates) {
      if (terminalStates.includes(from)) assert.equal(canTransition(from, to), false, `${from} → ${to}`);
    }
    if (!terminalStates.includes(from)) assert.ok(canTransition(from, 'ended') && canTransition(from, 'failed'), from);
    assert.equal(canTransition(from, 'starting'), false, `nothing returns to starting (${from})`);
  }
});
