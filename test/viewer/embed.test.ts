import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appMessageSource, embedMessagesVersion } from '../../src/protocol/embed-messages.js';
import { configureOf, embedderOriginOf, hideablePartsOf, httpOrigin, isPlainCssValue, languageTagOf } from '../../src/viewer/lib/embed.js';
import { sessionApiPath, viewerAddressOf, vncUrl } from '../../src/viewer/lib/viewer-address.js';

// The viewer in an app's iframe: whom it posts to (never '*'), what configure it takes, and where
// its API is when the app serves it under a path prefix.

test('the embedder is an http(s) origin and nothing else; else the parent’s origin; else nobody', () => {
  assert.equal(httpOrigin('https://app.example'), 'https://app.example');
  assert.equal(httpOrigin('http://127.0.0.1:8080'), 'http://127.0.0.1:8080');
  for (const bad of [
    '*',
    '',
    'https://app.example/',
    'https://app.example/path',
    'javascript:alert(1)',
    'file:///x',
    'app.example',
    'null',
    'HTTPS://APP.EXAMPLE',
  ]) {
    assert.equal(httpOrigin(bad), null, bad);
  }
  assert.equal(embedderOriginOf('https://app.example', ['https://other.example']), 'https://app.example');
  assert.equal(embedderOriginOf(null, ['https://parent.example']), 'https://parent.example');
  assert.equal(embedderOriginOf('*', ['https://parent.example']), 'https://parent.example', 'a star is no origin');
  assert.equal(embedderOriginOf(null, undefined), null, 'Firefox without embedder=: post nothing');
  assert.equal(embedderOriginOf(null, ['null']), null, 'an opaque parent');
});

test('configure: only porthole-app v1 configure messages; only valid parts of them', () => {
  assert.equal(configureOf({ source: 'porthole-viewer', v: 1, type: 'configure' }), null);
  assert.equal(configureOf({ source: appMessageSource, v: 2, type: 'configure' }), null);
  assert.equal(configureOf('configure'), null);
  const taken = configureOf({
    source: appMessageSource,
    v: embedMessagesVersion,
    type: 'configure',
    lang: 'de-CH',
    strings: { 'label.end': 'Beenden', 'label.paste': 3 },
    theme: {
      '--accent': '#0a7a55',
      '--font': '"Inter", system-ui, sans-serif',
      '--radius': '12px',
      color: 'red',
      '--bg': 'red; background: url(https://evil.example/x.png)',
      '--stage': 'url(https://evil.example/x.png)',
      '--text': 'u\\72l(x)',
      '--surface': 'image-set("x.png" 1x)',
      '--muted': '} body { display: none',
    },
    hide: ['toolbar', 'end', 'everything'],
  });
  assert.ok(taken);
  assert.equal(taken.lang, 'de-CH');
  assert.deepEqual(taken.strings, { 'label.end': 'Beenden' });
  assert.deepEqual(taken.theme, { '--accent': '#0a7a55', '--font': '"Inter", system-ui, sans-serif', '--radius': '12px' });
  assert.deepEqual(taken.hide, ['toolbar', 'end']);
  assert.deepEqual(
    taken.ignored.sort(),
    ['strings.label.paste', 'theme.--bg', 'theme.--muted', 'theme.--stage', 'theme.--surface', 'theme.--text', 'theme.color'].sort(),
  );
  const bare = configureOf({ source: appMessageSource, v: 1, type: 'configure', lang: 'not a tag', theme: 'red', hide: 'toolbar' });
  assert.deepEqual(bare, { lang: null, strings: {}, theme: {}, hide: null, ignored: ['lang', 'theme', 'hide'] });
});

test('CSS values, language tags and hide lists', () => {
  for (const ok of ['#fff', 'rgb(0 0 0 / 40%)', 'color-mix(in srgb, #fff 50%, transparent)', '0.5rem', 'system-ui, sans-serif'])
    assert.ok(isPlainCssValue(ok), ok);
  for (const bad of ['', 'a;b', 'a{', 'URL(x)', 'url (x)', '/* x */', 'a\nb', 42, 'x'.repeat(201)]) assert.equal(isPlainCssValue(bad), false, String(bad));
  assert.equal(languageTagOf('pt-BR'), 'pt-BR');
  assert.equal(languageTagOf('en"><script>'), null);
  assert.deepEqual(hideablePartsOf('toolbar, end,nope,,end'), ['toolbar', 'end']);
  assert.deepEqual(hideablePartsOf(null), []);
});

test('the API is under the viewer’s own prefix: nothing, or the app’s', () => {
  const root = viewerAddressOf('/v1/sessions/ses_abc/viewer');
  assert.deepEqual(root, { apiBase: '', sessionId: 'ses_abc' });
  assert.equal(sessionApiPath(root!, '/events'), '/v1/sessions/ses_abc/events');
  const prefixed = viewerAddressOf('/porthole/v1/sessions/ses_abc/viewer');
  assert.deepEqual(prefixed, { apiBase: '/porthole', sessionId: 'ses_abc' });
  assert.equal(sessionApiPath(prefixed!, '/ticket'), '/porthole/v1/sessions/ses_abc/ticket');
  assert.equal(
    vncUrl(prefixed!, 't k', 'https://app.example/porthole/v1/sessions/ses_abc/viewer?x=1'),
    'wss://app.example/porthole/v1/sessions/ses_abc/vnc?ticket=t+k',
  );
  assert.equal(vncUrl(root!, 'tk', 'http://127.0.0.1:1/v1/sessions/ses_abc/viewer'), 'ws://127.0.0.1:1/v1/sessions/ses_abc/vnc?ticket=tk');
  assert.equal(viewerAddressOf('/v1/sessions/ses_abc/'), null);
  assert.equal(viewerAddressOf('/'), null);
});
