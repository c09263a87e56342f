import type { Frame, Page } from 'playwright-core';
import { elapse, until } from './until.js';

// The demo provider's sign-in pages as they show in the viewer's noVNC canvas, read the way a
// person's eye does: the blue primary button ("Sign in", then "Allow" on the consent page) and the
// two text fields above it. The e2e tests that sign in through the canvas (test/e2e/demo-login,
// embed-messages, app-afternoon) find what to click here and do the clicking and typing themselves.

/** A rectangle in desktop pixels (the canvas's own, not the page's). */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Point {
  x: number;
  y: number;
}

/** The viewer's page or its frame (in an app's page): whatever holds `#screen canvas`. Page fits too. */
export type ViewerSurface = Pick<Frame, 'evaluate' | 'locator'>;

/** The demo pages' primary button colour (src/demo/oidc/pages.ts). */
const demoBlue = [47, 111, 222] as const;

/**
 * The demo pages' primary button ("Sign in", "Allow"), in desktop pixels: the tallest band of rows
 * with a long run of its blue (a focused field's ring and the logo are the same blue, but thin).
 * Null while the canvas shows no such button.
 */
export function buttonBox(viewer: ViewerSurface): Promise<Box | null> {
  return viewer.evaluate((rgb) => {
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement | null;
    if (!canvas || canvas.width === 0) return null;
    const { width, height } = canvas;
    const data = canvas.getContext('2d')!.getImageData(0, 0, width, height).data;
    const isBlue = (i: number) => Math.abs(data[i]! - rgb[0]!) < 10 && Math.abs(data[i + 1]! - rgb[1]!) < 10 && Math.abs(data[i + 2]! - rgb[2]!) < 10;
    let best: { x: number; y: number; w: number; h: number } | null = null;
    let band: { y: number; x0: number; x1: number } | null = null;
    for (let y = 0; y <= height; y++) {
      // The row's longest run of blue: one button, not two blue things side by side.
      let n = 0;
      let x0 = width;
      let x1 = -1;
      if (y < height) {
        let start = -1;
        for (let x = 0; x <= width; x++) {
          const isRun = x < width && isBlue((y * width + x) * 4);
          if (isRun && start < 0) start = x;
          if (!isRun && start >= 0) {
            if (x - start > n) [n, x0, x1] = [x - start, start, x - 1];
            start = -1;
          }
        }
      }
      if (n >= 150) {
        band = band ? { y: band.y, x0: Math.min(band.x0, x0), x1: Math.max(band.x1, x1) } : { y, x0, x1 };
      } else if (band) {
        const h = y - band.y;
        if (h >= 20 && (!best || h > best.h)) best = { x: band.x0, y: band.y, w: band.x1 - band.x0 + 1, h };
        band = null;
      }
    }
    return best;
  }, demoBlue);
}

/**
 * The two text fields above the "Sign in" button, found the way a person's eye does: walking up
 * the column through the button's centre, each field is a pair of border runs (non-white rows)
 * around a white interior at least 25 px tall. Returns their centres, password field first.
 */
export function fieldsAbove(viewer: ViewerSurface, button: Box): Promise<Point[]> {
  return viewer.evaluate((button) => {
    const canvas = document.querySelector('#screen canvas') as HTMLCanvasElement;
    const x = Math.round(button.x + button.w / 2);
    const column = canvas.getContext('2d')!.getImageData(x, 0, 1, button.y).data;
    const isWhite = (y: number) => column[y * 4]! > 245 && column[y * 4 + 1]! > 245 && column[y * 4 + 2]! > 245;
    const fields: Array<{ x: number; y: number }> = [];
    let y = button.y - 1;
    while (y > 0 && fields.length < 2) {
      while (y > 0 && isWhite(y)) y--; // gap above the button or the previous field
      while (y > 0 && !isWhite(y)) y--; // a field's bottom border (and focus ring)
      const bottom = y;
      while (y > 0 && isWhite(y)) y--; // its interior
      if (bottom - y >= 25) {
        fields.push({ x, y: Math.round((bottom + y) / 2) });
        while (y > 0 && !isWhite(y)) y--; // its top border, so the label gap above is not taken for a field
      }
    }
    return fields;
  }, button);
}

/** Whether the button shown now is another page's (the consent page's "Allow"), not the sign-in page's at `signIn`. */
export function isPastSignIn(signIn: Box): (box: Box | null) => boolean {
  return (box) => box !== null && Math.abs(box.y - signIn.y) > 10;
}

export function centreOf(box: Box): Point {
  return { x: box.x + box.w / 2, y: box.y + box.h / 2 };
}

/**
 * Desktop pixels → the top page's coordinates, for `page.mouse`: the canvas's box as Playwright
 * reports it (the top page's, any frame's offset included), scaled from the canvas's own size.
 * Read once the canvas shows the page to click: the viewer may rescale it before.
 */
export async function canvasToPage(viewer: ViewerSurface): Promise<(point: Point) => Point> {
  const canvas = viewer.locator('#screen canvas');
  const box = (await canvas.boundingBox())!;
  const size = await canvas.evaluate((c: HTMLCanvasElement) => ({ w: c.width, h: c.height }));
  return (point) => ({ x: box.x + (point.x * box.width) / size.w, y: box.y + (point.y * box.height) / size.h });
}

/**
 * Signs in to the demo provider through the canvas of a viewer framed in `page` (the app's page or
 * the viewer's own): fills the e-mail and password fields above the "Sign in" button, presses it,
 * waits for the consent page and presses "Allow". On a loaded machine a key can overtake the click
 * that focuses its field in the sandbox (openbox replays the click), and the form goes half-filled:
 * then the login page stays, and the form is filled once more. Screenshots go to `out`.
 */
export async function signInThroughFramedCanvas(
  page: Pick<Page, 'mouse' | 'keyboard' | 'screenshot'>,
  viewer: ViewerSurface,
  account: { email: string; password: string; out: string },
): Promise<void> {
  const { email, password, out } = account;
  const signIn = await until(
    'the login page in the canvas',
    () => buttonBox(viewer),
    (box) => box !== null,
    60_000,
    {
      onTimeout: () => page.screenshot({ path: `${out}/no-login-page.png` }),
    },
  );
  // The canvas box in the page's coordinates (Playwright adds an iframe's offset).
  const toPage = await canvasToPage(viewer);
  const [passwordField, emailField] = await fieldsAbove(viewer, signIn!);
  if (!passwordField || !emailField) throw new Error('the e-mail and password fields are not above the Sign in button');
  const isConsentPage = isPastSignIn(signIn!);
  let allow: Box | null = null;
  for (let attempt = 1; attempt <= 2 && !isConsentPage(allow); attempt++) {
    for (const [field, text] of [
      [emailField, email],
      [passwordField, password],
    ] as const) {
      const at = toPage(field);
      await page.mouse.click(at.x, at.y);
      await elapse(300, 'the click focuses the field in the sandbox before the keys come');
      await page.keyboard.press('Control+A');
      await page.keyboard.type(text, { delay: 30 });
      await elapse(1_000, 'the sandbox’s Chromium takes every key before the focus moves');
    }
    await page.screenshot({ path: `${out}/filled-${attempt}.png` });
    const at = toPage(centreOf(signIn!));
    await page.mouse.click(at.x, at.y);
    allow = await until('the consent page in the canvas', () => buttonBox(viewer), isConsentPage, 30_000, {
      onTimeout: () => page.screenshot({ path: `${out}/no-consent-${attempt}.png` }),
    }).catch((error: unknown) => {
      if (attempt === 2) throw error;
      return null;
    });
  }
  await page.screenshot({ path: `${out}/consent.png` });
  const at = toPage(centreOf(allow!));
  await page.mouse.click(at.x, at.y);
}
