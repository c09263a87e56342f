import { access, chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentConfig } from '../protocol/agent.js';
import { egressProxyPort } from '../protocol/egress.js';
import type { BrowserControl } from './browser-control.js';
import type { ProcessSpec } from './supervised-process.js';

// The sandbox's desktop: Xvnc, openbox, an xterm in the lower part of the screen and Chromium in
// the upper part, so that neither hides the other.
//
// Why Xvnc and not Xvfb + x11vnc: both measured in the same sandbox on this host (2 cores,
// 1280x800, median of 5): Xvnc is one process that is both the X server and the RFB server, so no
// framebuffer is copied between processes and an idle desktop costs nothing: RFB banner 114 ms vs
// 245 ms after create(), first full framebuffer 175 ms vs 1141 ms, 22 vs 30 MiB PSS for the VNC
// side, 0 % vs 1.8 % CPU idle with a viewer attached (x11vnc polls the screen). x11vnc also needs
// `-rfbport 0 -rfbportv6 -1` to keep off TCP, and refuses unix-socket clients with -localhost.

export const display = ':0';

/** Chromium resolves no name but loopback: a sign-in page on the internet shows "not found" and is never fetched. */
export const loopbackOnlyFlag = '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1';

/**
 * Chromium's network flags: in a sandbox with no network of its own, everything but loopback goes
 * through the egress proxy (Chromium never sends loopback through a proxy, which is right: the CLI's
 * sign-in callback and the tunnelled demo issuer both live on the sandbox's own loopback).
 */
export function chromiumNetworkFlags(config: AgentConfig): string[] {
  // Behind the egress proxy Chromium resolves no name itself (the proxy does, and with
  // loopbackOnly it resolves none): no --host-resolver-rules, whose "unsupported command-line flag"
  // bar would sit over the sign-in page.
  if (config.egress) return [`--proxy-server=http://127.0.0.1:${egressProxyPort}`];
  return config.loopbackOnly ? [loopbackOnlyFlag] : [];
}

/** The proxy settings for the CLIs (their HTTP clients honour these; see docs/security.md for which do). */
export function proxyEnv(config: AgentConfig): Record<string, string> {
  if (!config.egress) return {};
  const proxy = `http://127.0.0.1:${egressProxyPort}`;
  const noProxy = 'localhost,127.0.0.1,::1';
  return { HTTPS_PROXY: proxy, HTTP_PROXY: proxy, https_proxy: proxy, http_proxy: proxy, NO_PROXY: noProxy, no_proxy: noProxy };
}

const xSocketDir = '/tmp/.X11-unix';
export const xSocket = `${xSocketDir}/X0`;

/** Where each window goes, in pixels; xterm is sized in character cells. */
export function desktopLayout(
  width: number,
  height: number,
): { browser: { x: number; y: number; width: number; height: number }; terminal: { x: number; y: number; columns: number; rows: number } } {
  const browserHeight = Math.round(height * 0.62);
  // Measured with Xvnc's 96 dpi: xterm's Monospace 11 pt cell is 10 x 21 px plus 4 px of base size;
  // openbox frames it with 1 px sides, a 20 px title bar and a 5 px bottom handle. These are only
  // the start geometry: src/agent/layout.ts sizes the windows in pixels once they are mapped, and
  // again whenever the viewer changes the screen's size.
  const cellWidth = 10;
  const cellHeight = 21;
  const terminalTop = browserHeight;
  const columns = Math.max(20, Math.floor((width - 2 - 4) / cellWidth));
  const rows = Math.max(4, Math.floor((height - terminalTop - 25 - 4) / cellHeight));
  return { browser: { x: 0, y: 0, width, height: browserHeight }, terminal: { x: 0, y: terminalTop, columns, rows } };
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

async function waitForPaths(paths: readonly string[], signal: AbortSignal): Promise<void> {
  for (;;) {
    signal.throwIfAborted();
    const found = await Promise.all(paths.map(exists));
    if (found.every(Boolean)) return;
    await sleep(50, undefined, { signal });
  }
}

/**
 * The sandbox's Chromium never offers to save a password or fill a form: the person's password
 * would otherwise rest in the profile (on the host's disk, readable to the sandbox) until the
 * sandbox is destroyed, and the "Save password?" bubble covers the sign-in page's buttons.
 * Written once, before Chromium's first start; Chromium keeps its own changes after that.
 */
async function seedProfile(profile: string): Promise<void> {
  const preferences = {
    credentials_enable_service: false,
    credentials_enable_autosignin: false,
    profile: { password_manager_enabled: false },
    autofill: { enabled: false, profile_enabled: false, credit_card_enabled: false },
    translate: { enabled: false },
  };
  await mkdir(join(profile, 'Default'), { recursive: true, mode: 0o700 });
  await writeFile(join(profile, 'Default', 'Preferences'), JSON.stringify(preferences), { flag: 'wx', mode: 0o600 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
}

/** `browser` takes Chromium's DevTools pipe at each start (browser-control.ts): how the agent opens the sign-in URL. */
export function desktopProcesses(config: AgentConfig, home: string, browser: BrowserControl): ProcessSpec[] {
  const layout = desktopLayout(config.width, config.height);
  const displayReady = (signal: AbortSignal): Promise<void> => waitForPaths([xSocket, config.vncSocket], signal);
  return [
    {
      name: 'vnc',
      command: 'Xvnc',
      args: [
        display,
        ...['-rfbport', '-1', '-rfbunixpath', config.vncSocket, '-SecurityTypes', 'None'],
        ...['-geometry', `${config.width}x${config.height}`, '-depth', '24', '-extension', 'GLX'],
        // -nolisten local: no abstract @/tmp/.X11-unix/X0 socket. Abstract sockets belong to the
        // network namespace, which the sandbox shares with the host for now: without this every
        // sandbox's :0 would collide and any host process could reach the display.
        ...['-nolisten', 'tcp', '-nolisten', 'local'],
        ...['-AlwaysShared', '-AcceptSetDesktopSize', '-desktop', 'porthole'],
        // Only the server reaches this socket. TigerVNC's blacklist counts a client that reads the
        // banner and leaves (every readiness probe) as a failed login and, after 5, locks out every
        // client, viewers included, for 10 s and longer.
        '-UseBlacklist=0',
      ],
      beforeStart: async () => {
        // Xvnc as non-root does not create the socket directory; a killed Xvnc leaves its lock
        // and sockets behind, and the next one refuses to start while they are there.
        await mkdir(xSocketDir, { recursive: true });
        await chmod(xSocketDir, 0o1777);
        await Promise.all([xSocket, '/tmp/.X0-lock', config.vncSocket].map((path) => rm(path, { force: true })));
      },
    },
    { name: 'wm', command: 'openbox', args: [], beforeStart: displayReady },
    {
      name: 'terminal',
      command: 'xterm',
      args: [
        ...['-fa', 'Monospace', '-fs', '11', '-title', 'porthole terminal'],
        ...['-geometry', `${layout.terminal.columns}x${layout.terminal.rows}+${layout.terminal.x}+${layout.terminal.y}`],
      ],
      beforeStart: displayReady,
    },
    {
      name: 'browser',
      command: 'chromium',
      // With its own sandbox (user namespaces): never --no-sandbox.
      args: [
        ...['--no-first-run', '--no-default-browser-check', '--disable-background-networking', '--disable-component-update'],
        ...['--disable-sync', '--password-store=basic', `--user-data-dir=${join(home, '.config/chromium')}`],
        // Nothing but the sign-in leaves the sandbox: no extension or component updates, no model
        // downloads, no pings (each would be an egress event on the session's timeline).
        ...['--disable-extensions', '--no-pings', '--disable-domain-reliability', '--disable-client-side-phishing-detection', '--disable-default-apps'],
        '--disable-features=OptimizationHints,OptimizationHintsFetching,OptimizationGuideModelDownloading,OptimizationTargetPrediction,MediaRouter,Translate',
        ...chromiumNetworkFlags(config),
        `--window-position=${layout.browser.x},${layout.browser.y}`,
        `--window-size=${layout.browser.width},${layout.browser.height}`,
        '--remote-debugging-pipe',
        config.startUrl,
      ],
      onPipes: (pipes) => browser.attach(pipes),
      beforeStart: async (signal) => {
        await displayReady(signal);
        // A killed Chromium leaves its profile lock; a restarted one whose old pid was reused
        // would take the lock for another running instance and quit.
        const profile = join(home, '.config/chromium');
        await Promise.all(['SingletonLock', 'SingletonSocket', 'SingletonCookie'].map((name) => rm(join(profile, name), { force: true })));
        await seedProfile(profile);
      },
    },
  ];
}
