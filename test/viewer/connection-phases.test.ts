import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  canMove,
  ConnectionPhases,
  connectionPhases,
  finalPhaseFor,
  finalPhases,
  initialPhase,
  isFinalPhase,
  phaseMoves,
  type ConnectionPhase,
  type PhaseMove,
} from '../../src/viewer/lib/connection-phases.js';

// body[data-phase] carries these strings: the e2e tests wait on them and porthole.css styles them.
test('the phase names are pinned', () => {
  assert.deepEqual([...connectionPhases], ['starting', 'connecting', 'connected', 'reconnecting', 'closed', 'failed', 'completed']);
  assert.deepEqual([...finalPhases], ['closed', 'failed', 'completed']);
  assert.equal(initialPhase, 'starting', 'viewer.html starts with data-phase="starting"');
});

test('the move table is pinned', () => {
  assert.deepEqual(phaseMoves, {
    starting: ['connecting', 'reconnecting', 'closed', 'failed', 'completed'],
    connecting: ['starting', 'connected', 'reconnecting', 'closed', 'failed', 'completed'],
    connected: ['starting', 'connecting', 'reconnecting', 'closed', 'failed', 'completed'],
    reconnecting: ['starting', 'connecting', 'closed', 'failed', 'completed'],
    closed: [],
    failed: [],
    completed: [],
  });
});

test('final phases are permanent, every other phase can end, and only connecting reaches the desktop', () => {
  for (const from of connectionPhases) {
    assert.ok(canMove(from, from), `staying in ${from} is always allowed`);
    for (const to of connectionPhases) {
      if (isFinalPhase(from) && to !== from) assert.equal(canMove(from, to), false, `${from} → ${to}`);
      if (to === 'connected' && from !== 'connected') assert.equal(canMove(from, to), from === 'connecting', `${from} → connected`);
    }
    if (!isFinalPhase(from)) for (const end of finalPhases) assert.ok(canMove(from, end), `${from} → ${end}`);
  }
});

test('moves are checked, logged and heard by listeners; a refused move changes nothing', () => {
  const lines: { line: string; isRefused: boolean }[] = [];
  const phases = new ConnectionPhases({ log: (line, isRefused) => lines.push({ line, isRefused }) });
  const heard: PhaseMove[] = [];
  phases.onMove((move) => heard.push(move));
  assert.equal(phases.phase, 'starting');

  assert.equal(phases.moveTo('connected'), false, 'starting cannot skip connecting');
  assert.equal(phases.phase, 'starting');
  assert.deepEqual(heard, []);
  assert.deepEqual(lines, [{ line: 'viewer phase: refused starting → connected', isRefused: true }]);

  assert.equal(phases.moveTo('connecting'), true);
  assert.equal(phases.moveTo('connected'), true);
  assert.equal(phases.moveTo('connected'), true, 'a stay is accepted');
  assert.equal(phases.moveTo('reconnecting'), true);
  assert.deepEqual(
    heard,
    [
      { from: 'starting', to: 'connecting' },
      { from: 'connecting', to: 'connected' },
      { from: 'connected', to: 'reconnecting' },
    ],
    'a stay is not a move',
  );
  assert.deepEqual(
    lines.slice(1).map((l) => l.line),
    ['viewer phase: starting → connecting', 'viewer phase: connecting → connected', 'viewer phase: connected → reconnecting'],
  );
  assert.ok(lines.slice(1).every((l) => !l.isRefused));
});

test('a final phase never changes, whatever is asked', () => {
  for (const end of finalPhases) {
    const lines: string[] = [];
    const phases = new ConnectionPhases({ log: (line) => lines.push(line) });
    const heard: PhaseMove[] = [];
    phases.onMove((move) => heard.push(move));
    assert.ok(phases.moveTo(end));
    assert.ok(phases.isFinal);
    for (const to of connectionPhases) {
      assert.equal(phases.moveTo(to), to === end, `${end} → ${to}`);
      assert.equal(phases.phase, end);
    }
    assert.deepEqual(heard, [{ from: 'starting', to: end }]);
    assert.ok(lines.some((line) => line.includes(`(${end} is final)`)));
  }
});

test('a removed listener hears nothing more', () => {
  const phases = new ConnectionPhases();
  const heard: ConnectionPhase[] = [];
  const remove = phases.onMove(({ to }) => heard.push(to));
  phases.moveTo('connecting');
  remove();
  phases.moveTo('connected');
  assert.deepEqual(heard, ['connecting']);
});

test('beginning a course makes every earlier one stale', () => {
  const phases = new ConnectionPhases();
  const first = phases.begin();
  assert.ok(first.isCurrent);
  const watching = phases.current();
  assert.ok(watching.isCurrent, 'current() is the course under way');
  const second = phases.begin();
  assert.equal(first.isCurrent, false);
  assert.equal(watching.isCurrent, false);
  assert.ok(second.isCurrent);
  assert.ok(phases.current().isCurrent);
  phases.moveTo('connecting');
  assert.ok(second.isCurrent, 'a move does not end the course that made it');
});

test('a terminal session shows in its final phase', () => {
  assert.equal(finalPhaseFor('failed'), 'failed');
  assert.equal(finalPhaseFor('completed'), 'completed');
  assert.equal(finalPhaseFor('ended'), 'closed');
});
