import assert from 'node:assert/strict';
import { type IncomingHttpHeaders, request } from 'node:http';
import { after, before, test } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { startTestServer, type TestServer } from '../support/server.js';

// The viewer's and dashboard's assets: fingerprinted by the build, so a page's `?v=<hash>` URL is
// kept by browsers for a year and every other request revalidates; compressed once by the build
// (brotli, gzip) and sent so to browsers that accept it; nothing but the assets is served.

let t: TestServer;
before(async () => {
  t = await startTestServer('assets');
});
after(() => t?.stop());

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${t.server.url}${path}`, { headers });

/** The answer as sent: fetch() would decode what it asked for, and makes a conditional request unconditional. */
function raw(path: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(`${t.server.url}${path}`, { headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (c: Buffer) => chunks.push(c));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
    })
      .on('error', reject)
      .end();
  });
}

async function assetUrl(page: string, name: string): Promise<string> {
  const html = await (await get(page)).text();
  const found = new RegExp(`/assets/${name.replace('.', '\\.')}\\?v=[A-Za-z0-9_-]+`).exec(html)?.[0];
  assert.ok(found, `${page} refers to ${name} by its fingerprint`);
  return found;
}

test('a page asks for each asset by its fingerprint, and that URL may be kept for a year', async () => {
  const url = await assetUrl('/', 'dashboard.js');
  const response = await get(url);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('cache-control') ?? '', /max-age=31536000/);
  assert.match(response.headers.get('cache-control') ?? '', /immutable/);
  assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  assert.match(response.headers.get('content-type') ?? '', /javascript/);
});

test('the dashboard has the viewer’s bundle fetched ahead, by the same fingerprinted URL the viewer page uses', async () => {
  const session = await t.api.createSession({});
  const fromViewer = await assetUrl(`/v1/sessions/${session.id}/viewer`, 'viewer.js');
  const dashboard = await (await get('/')).text();
  assert.ok(dashboard.includes(`<link rel="prefetch" href="${fromViewer}"`), 'prefetched from the dashboard');
  await t.server.sessions.end(session.id, 'user');
});

test('brotli or gzip as the browser accepts, each the same bytes once decoded; identity otherwise', async () => {
  const url = await assetUrl('/', 'dashboard.js');
  const plain = Buffer.from(await (await get(url, { 'accept-encoding': 'identity' })).arrayBuffer());
  const br = await raw(url, { 'accept-encoding': 'gzip, deflate, br' });
  assert.equal(br.headers['content-encoding'], 'br');
  assert.match(br.headers.vary ?? '', /accept-encoding/i);
  assert.ok(br.body.length < plain.length / 2, `brotli is smaller: ${br.body.length} of ${plain.length} bytes`);
  assert.deepEqual(brotliDecompressSync(br.body), plain);
  const gz = await raw(url, { 'accept-encoding': 'gzip' });
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.deepEqual(gunzipSync(gz.body), plain);
  const none = await raw(url, { 'accept-encoding': 'identity' });
  assert.equal(none.headers['content-encoding'], undefined);
  assert.deepEqual(none.body, plain);
});

test('without its fingerprint (or with an old one) an asset revalidates, and an unchanged one is a 304', async () => {
  for (const path of ['/assets/dashboard.js', '/assets/dashboard.js?v=old']) {
    const response = await raw(path, { 'accept-encoding': 'br' });
    assert.equal(response.status, 200, path);
    assert.doesNotMatch(response.headers['cache-control'] ?? '', /immutable/, path);
    assert.match(response.headers['cache-control'] ?? '', /max-age=0/, path);
    const etag = response.headers.etag;
    assert.ok(etag, `${path} has an ETag`);
    assert.equal((await raw(path, { 'accept-encoding': 'br', 'if-none-match': etag })).status, 304, `${path} unchanged`);
  }
});

test('only the assets: not their compressed siblings, the fingerprint list, the pages, or other paths', async () => {
  for (const path of [
    '/assets/dashboard.js.br',
    '/assets/dashboard.js.gz',
    '/assets/asset-versions.json',
    '/assets/viewer.html',
    '/assets/..%2fpackage.json',
    '/assets/nope.js',
  ]) {
    const response = await get(path);
    assert.equal(response.status, 404, path);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'ROUTE_NOT_FOUND', path);
  }
});
