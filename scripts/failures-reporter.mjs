// A node:test reporter that writes only the failed tests, each with its file, line and the head of
// its error. scripts/test.mjs prints that list last, so a log cut to its tail (a CI excerpt) still
// names every failure.
const errorLines = 12;

export default async function* failures(source) {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const { name, file, line, details } = event.data;
    const error = details?.error;
    // A failure inside a subtest fails its parents too; the innermost one says why.
    if (error?.failureType === 'subtestsFailed') continue;
    const cause = error?.cause ?? error;
    const message = String(cause?.message ?? cause ?? 'failed')
      .split('\n')
      .slice(0, errorLines)
      .join('\n    ');
    yield `✗ ${name}\n    at ${file ?? '?'}:${line ?? '?'}\n    ${message}\n`;
  }
}
