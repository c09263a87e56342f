import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// docs/ARCHITECTURE.md's "Where things live" table answers "where is X?" with a file: every path
// it names must exist, so a move that forgets the table fails here.

const root = fileURLToPath(new URL('../../../', import.meta.url));

async function tableRows(): Promise<Array<{ question: string; paths: string[] }>> {
  const doc = await readFile(`${root}docs/ARCHITECTURE.md`, 'utf8');
  const start = doc.indexOf('## Where things live');
  assert.ok(start >= 0, 'docs/ARCHITECTURE.md has a "Where things live" section');
  const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
  return section
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| question') && !line.startsWith('|---'))
    .map((line) => {
      const [question = '', answer = ''] = line.slice(1, -1).split(' | ');
      // A path is a backticked word with a slash: `src/…`, `test/…`, `scripts/…`; not `startAgentLogin`.
      const paths = [...answer.matchAll(/`([^`]+\/[^`]+)`/g)].map((m) => m[1]!);
      return { question: question.trim(), paths };
    });
}

test('the table answers the ten questions of issue 8 and the newer ones', async () => {
  const rows = await tableRows();
  const questions = rows.map((r) => r.question).join('\n');
  for (const topic of [
    'close-code table',
    'change state',
    'ticket verified',
    'command line',
    'transition table',
    'Origin',
    'encrypted',
    'reconciler',
    "agent's login",
    'RFB handshake',
    'egress policy',
    'pinned sockets',
    'cgroups',
    'lease',
  ]) {
    assert.ok(questions.includes(topic), `a row about ${topic}`);
  }
  for (const row of rows) assert.ok(row.paths.length > 0, `${row.question} names a file`);
});

test('every path the table names exists', async () => {
  const missing: string[] = [];
  for (const { question, paths } of await tableRows()) {
    for (const path of paths) {
      if (
        !(await access(`${root}${path}`).then(
          () => true,
          () => false,
        ))
      )
        missing.push(`${path} (${question})`);
    }
  }
  assert.deepEqual(missing, [], 'paths in docs/ARCHITECTURE.md that do not exist');
});
