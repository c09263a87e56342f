import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startTestServer, type TestServer } from '../support/server.js';

// The SDK's types (sdk/src/openapi.ts) are generated from the OpenAPI document the server serves.
// This renders them again from a real server's /v1/openapi.json, as `npm run sdk:types` does, and
// fails when the committed file differs: a route, field or error code changed without the SDK.

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface SdkTypesScript {
  renderSdkTypes(document: unknown): Promise<string>;
  sdkTypesPath: string;
  sdkTypesCommand: string;
}

let t: TestServer;
before(async () => {
  t = await startTestServer('sdk-openapi-drift');
});
after(() => t?.stop());

test('sdk/src/openapi.ts is what openapi-typescript makes of the served /v1/openapi.json', async () => {
  const script = (await import(pathToFileURL(`${root}scripts/sdk-types.mjs`).href)) as SdkTypesScript;
  const response = await fetch(`${t.server.url}/v1/openapi.json`);
  assert.equal(response.status, 200);
  const expected = await script.renderSdkTypes(await response.json());
  const committed = await readFile(`${root}${script.sdkTypesPath}`, 'utf8');
  if (committed === expected) return;
  const a = committed.split('\n');
  const b = expected.split('\n');
  const line = a.findIndex((text, i) => text !== b[i]);
  const at = line === -1 ? a.length : line;
  assert.fail(
    `${script.sdkTypesPath} is stale: the server's OpenAPI document changed. Run \`${script.sdkTypesCommand}\` and commit the result.\n` +
      `first difference at line ${at + 1}:\n  committed: ${a[at] ?? '(end of file)'}\n  generated: ${b[at] ?? '(end of file)'}`,
  );
});
