// The app's own server: Next.js for the app, and porthole's viewer under /porthole on the same
// origin, WebSocket included. The browser never talks to porthole directly and never holds the
// app's API key: the proxy forwards only the viewer's surface (see @porthole/sdk/proxy).
import { createServer } from 'node:http';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPortholeProxy } from '@porthole/sdk/proxy';
import next from 'next';

const host = process.env.HOST ?? '127.0.0.1';
const port = Number(process.env.PORT ?? 3000);
const portholeUrl = process.env.PORTHOLE_URL ?? 'http://127.0.0.1:8480';

const app = next({ dev: false, dir: dirname(fileURLToPath(import.meta.url)), hostname: host, port });
const handleNext = app.getRequestHandler();
await app.prepare();

// porthole must list this app's origin in PORTHOLE_ALLOWED_ORIGINS: the proxy passes the browser's
// Origin on unchanged, and porthole's relay checks it.
const porthole = createPortholeProxy({ target: portholeUrl, prefix: '/porthole' });

const server = createServer((req, res) => {
  if (porthole.handle(req, res)) return;
  handleNext(req, res);
});
server.on('upgrade', (req, socket, head) => {
  if (porthole.upgrade(req, socket, head)) return;
  // This app has no other WebSocket.
  socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
});

server.listen(port, host, () => {
  console.log(`example app at http://${host}:${port} (porthole at ${portholeUrl})`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
