import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

// Keeps the desktop's two windows laid out when the screen changes size. The viewer asks Xvnc for
// its own size (SetDesktopSize); X then reports a RandR screen change, but the windows keep the
// geometry they were started with (Chromium 1280 px wide on a 900 px screen, the xterm below the
// bottom edge): openbox only pushes windows back on screen, it does not resize them.
//
// Measured here: TigerVNC's Xvnc sends RRScreenChangeNotify for every SetDesktopSize, and
// `xev -root -event randr` prints it as it comes. So this watcher runs one xev (x11-utils) and, a
// short while after the last screen change, moves and sizes the windows with xdotool. It also
// watches windows being mapped (substructure events), so a restarted Chromium or xterm is laid out
// for the current size rather than the size in its command line. A window is laid out once per
// screen size: a person who moves a window keeps it there until the screen changes again.
//
// Neither tool is essential to the session: when one is missing or fails, the desktop still works
// at its old layout, and the watcher says so once in the agent's log.

type Log = (event: string, fields?: Record<string, unknown>) => void;

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Openbox's frame around a client window: [left, right, top, bottom] in pixels. */
type FrameExtents = readonly [number, number, number, number];

/** The screen is never laid out as smaller than this; the viewer does not ask for less either. */
export const minScreen = { width: 640, height: 480 } as const;

/**
 * Where each window's frame goes: Chromium over the top 62 %, the terminal below it. Frames, not
 * client areas: openbox decorates the xterm (title bar and borders), Chromium draws its own.
 */
export function windowLayout(width: number, height: number): { browser: Rect; terminal: Rect } {
  const w = Math.max(minScreen.width, width);
  const h = Math.max(minScreen.height, height);
  const browserHeight = Math.round(h * 0.62);
  return {
    browser: { x: 0, y: 0, width: w, height: browserHeight },
    terminal: { x: 0, y: browserHeight, width: w, height: h - browserHeight },
  };
}

/** After the last screen change or new window, wait this long: a dragged viewer resizes many times. */
const settleMs = 250;
const restartMs = 1_000;
/**
 * A window just mapped is laid out again for this long: Chromium applies its own --window-size
 * a moment after it maps, over the layout (measured: a viewer that resized the screen while
 * Chromium started found it at 1280x496 on a 1400x912 screen). After that the window is the
 * person's to move, until the screen changes size.
 */
const settlingWindowMs = 5_000;
const recheckMs = 1_000;

function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { env, timeout: 5_000 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
  });
}

interface ManagedWindow {
  id: number;
  role: 'browser' | 'terminal';
  extents: FrameExtents;
}

/**
 * The windows to lay out: only those openbox manages (_NET_CLIENT_LIST) and of the normal type.
 * Chromium's own popups (autofill lists, bubbles, menus) share its window class but are not
 * managed, and moving one of them onto the browser's area mid-typing loses keystrokes.
 */
export function parseWindow(id: number, xprop: string): ManagedWindow | null {
  const wmClass = /^WM_CLASS\(STRING\) = (.*)$/m.exec(xprop)?.[1] ?? '';
  const type = /^_NET_WM_WINDOW_TYPE\(ATOM\) = (.*)$/m.exec(xprop)?.[1] ?? '_NET_WM_WINDOW_TYPE_NORMAL';
  if (!type.startsWith('_NET_WM_WINDOW_TYPE_NORMAL')) return null;
  const role = /"chromium/i.test(wmClass) ? 'browser' : /"xterm"/i.test(wmClass) ? 'terminal' : null;
  if (role === null) return null;
  const numbers = /^_NET_FRAME_EXTENTS\(CARDINAL\) = (\d+), (\d+), (\d+), (\d+)/m.exec(xprop)?.slice(1).map(Number);
  const extents: FrameExtents = numbers?.length === 4 ? [numbers[0]!, numbers[1]!, numbers[2]!, numbers[3]!] : [0, 0, 0, 0];
  return { id, role, extents };
}

async function managedWindows(env: NodeJS.ProcessEnv): Promise<ManagedWindow[]> {
  const list = await run('xprop', ['-root', '_NET_CLIENT_LIST'], env);
  const ids = [...list.matchAll(/0x[0-9a-f]+/gi)].map((match) => Number.parseInt(match[0], 16));
  const windows: ManagedWindow[] = [];
  for (const id of ids) {
    // A window can close between the list and this read: then it is simply not laid out.
    const props = await run('xprop', ['-id', String(id), 'WM_CLASS', '_NET_WM_WINDOW_TYPE', '_NET_FRAME_EXTENTS'], env).catch(() => '');
    const window = parseWindow(id, props);
    if (window) windows.push(window);
  }
  return windows;
}

/**
 * Starts watching; returns a stop function. Never throws: problems are logged. Stops by itself when
 * the agent exits, so that the one call in main.ts is all the wiring it needs.
 */
export function watchScreenLayout(env: NodeJS.ProcessEnv, log: Log): () => void {
  let xev: ChildProcess | null = null;
  let isStopped = false;
  let timer: NodeJS.Timeout | null = null;
  let isScreenChanged = false;
  let pass: Promise<void> = Promise.resolve();
  /** Windows laid out for `laidOutFor`, and when first; a new screen size starts over. */
  let laidOut = new Map<string, number>();
  let laidOutFor = '';
  let hasReportedFailure = false;

  const reportOnce = (event: string, error: unknown): void => {
    if (hasReportedFailure) return;
    hasReportedFailure = true;
    log(event, { error: error instanceof Error ? error.message : String(error) });
  };

  const layOut = async (): Promise<void> => {
    const geometry = (await run('xdotool', ['getdisplaygeometry'], env)).trim().split(/\s+/).map(Number);
    const [width = 0, height = 0] = geometry;
    if (!(width > 0 && height > 0)) return;
    const size = `${width}x${height}`;
    if (size !== laidOutFor) {
      laidOut = new Map();
      laidOutFor = size;
    }
    const layout = windowLayout(width, height);
    const moved: string[] = [];
    let isSettling = false;
    for (const window of await managedWindows(env)) {
      const key = String(window.id);
      const firstAt = laidOut.get(key);
      if (firstAt !== undefined && Date.now() - firstAt > settlingWindowMs) continue;
      isSettling = true;
      const frame = layout[window.role];
      const [left, right, top, bottom] = window.extents;
      // windowsize sets the client area; windowmove places the frame's corner (NorthWest gravity).
      const clientWidth = Math.max(100, frame.width - left - right);
      const clientHeight = Math.max(60, frame.height - top - bottom);
      await run('xdotool', ['windowsize', key, String(clientWidth), String(clientHeight), 'windowmove', key, String(frame.x), String(frame.y)], env);
      if (firstAt === undefined) {
        laidOut.set(key, Date.now());
        moved.push(`${window.role}:${key}`);
      }
    }
    if (isSettling) schedule(recheckMs);
    if (isScreenChanged || moved.length > 0) log('layout.applied', { width, height, windows: moved });
    isScreenChanged = false;
  };

  const schedule = (delayMs: number = settleMs): void => {
    if (isStopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      // One pass at a time: xdotool's own moves must not interleave with the next pass's.
      pass = pass.then(layOut).catch((error: unknown) => reportOnce('layout.failed', error));
    }, delayMs);
  };

  const startXev = (): void => {
    if (isStopped) return;
    const child = spawn('xev', ['-root', '-event', 'randr', '-event', 'substructure'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
    xev = child;
    child.once('error', (error: NodeJS.ErrnoException) => {
      reportOnce('layout.unavailable', error);
      if (error.code === 'ENOENT') isStopped = true;
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('RRScreenChangeNotify')) {
        isScreenChanged = true;
        schedule();
      } else if (line.startsWith('MapNotify')) {
        schedule();
      }
    });
    child.once('exit', () => {
      if (xev === child) xev = null;
      // The display went away (Xvnc restarted) or xev is missing; try again calmly.
      if (!isStopped) setTimeout(startXev, restartMs).unref();
    });
    // Windows mapped before xev started (or while it was down) are laid out too.
    schedule();
  };

  const stop = (): void => {
    isStopped = true;
    if (timer) clearTimeout(timer);
    xev?.kill();
  };
  process.once('exit', stop);
  startXev();
  return stop;
}
