import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tellingLine } from '../../src/drivers/sandbox-dir.js';

// A failed start's detail quotes the sandbox log's own word on it: the line that names the error.

test('a failed start names the log line that says why: Node.js’s error, not its stack or its version', () => {
  // The log of a sandbox whose agent bundle its uid could not read (a CI run's, verbatim).
  const log = [
    'node:internal/fs/promises:637',
    '  return new FileHandle(await PromisePrototypeThen(',
    '                        ^',
    '',
    "Error: EACCES: permission denied, open '/opt/porthole/agent.mjs'",
    '    at async open (node:internal/fs/promises:637:25)',
    '    at async readFile (node:internal/fs/promises:1249:14)',
    '    at async ModuleJob._link (node:internal/modules/esm/module_job:148:19) {',
    '  errno: -13,',
    "  code: 'EACCES',",
    "  syscall: 'open',",
    "  path: '/opt/porthole/agent.mjs'",
    '}',
    '',
    'Node.js v20.20.2',
  ].join('\n');
  assert.equal(tellingLine(log), "Error: EACCES: permission denied, open '/opt/porthole/agent.mjs'");
});

test('bwrap’s own complaint is the line; without any error word, the last line; nothing for an empty log', () => {
  assert.equal(tellingLine("bwrap: Can't mkdir /run/porthole: Permission denied\n"), "bwrap: Can't mkdir /run/porthole: Permission denied");
  assert.equal(tellingLine('starting\nstill starting\n'), 'still starting');
  assert.equal(tellingLine(''), null);
  assert.equal(tellingLine(null), null);
});

test('it is the sandbox’s output: one printable line of at most 200 characters', () => {
  const said = tellingLine(`Error: ${'x'.repeat(500)}\u001b[31m`)!;
  assert.equal(said.length, 200);
  assert.ok(said.endsWith('…'));
  assert.equal(tellingLine('Error: a\u0007b\u001b[2Jc'), 'Error: a b [2Jc');
});
