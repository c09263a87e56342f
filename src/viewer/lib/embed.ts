// The viewer inside an app's iframe: whom it posts its messages to, and which configure messages it
// takes (the schema: src/protocol/embed-messages.ts; the recipe: docs/embedding.md).
//
// Why posting to the embedder is safe. The viewer page may only be framed by porthole itself and
// the origins in PORTHOLE_ALLOWED_ORIGINS (its CSP frame-ancestors, set by the server), so a page
// elsewhere cannot even load it in a frame. The target origin is never '*': it is the origin the
// viewer URL names (`embedder=`), else the parent's origin as the browser reports it
// (location.ancestorOrigins[0]); postMessage with a targetOrigin is dropped by the browser unless
// the parent's document really has that origin, so a viewer URL carrying someone else's `embedder`
// tells that someone nothing. A configure message is taken only from the parent window and only
// from that same origin; what it may change is words, colours and which buttons show.
// Pure: no DOM (test/viewer/embed.test.ts).

import { appMessageSource, type ConfigureMessage, embedMessagesVersion, type HideablePart, hideableParts } from '../../protocol/embed-messages.js';

/** `value` as an http(s) origin (`https://app.example:8443`), or null when it is anything else (a path, a `*`, another scheme). */
export function httpOrigin(value: string | null | undefined): string | null {
  if (typeof value !== 'string' || value === '') return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  // Exactly an origin: `https://app.example/` and `https://app.example/path` are not.
  if (url.origin !== value) return null;
  return url.origin;
}

/**
 * Where the viewer posts: the `embedder` query parameter if it is an http(s) origin, else the
 * parent's origin from location.ancestorOrigins (Chromium, Safari; not Firefox), else nowhere.
 */
export function embedderOriginOf(embedderParam: string | null, ancestorOrigins: ArrayLike<string> | undefined): string | null {
  const named = httpOrigin(embedderParam);
  if (named !== null) return named;
  return httpOrigin(ancestorOrigins?.[0]);
}

/** The hideable parts named in a list (`toolbar, end`, or an array), unknown names dropped. */
export function hideablePartsOf(list: string | readonly unknown[] | null | undefined): HideablePart[] {
  const names = typeof list === 'string' ? list.split(',') : Array.isArray(list) ? list : [];
  const parts = new Set<HideablePart>();
  for (const name of names) {
    const trimmed = typeof name === 'string' ? name.trim() : '';
    if ((hideableParts as readonly string[]).includes(trimmed)) parts.add(trimmed as HideablePart);
  }
  return [...parts];
}

/** A language tag for `<html lang>` (BCP 47 in shape: `de`, `pt-BR`, `zh-Hant-TW`), or null. */
export function languageTagOf(value: unknown): string | null {
  return typeof value === 'string' && /^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$/.test(value) ? value : null;
}

/** A custom property's name as a theme may set it: `--` and letters, digits, dashes. */
export function isThemeProperty(name: string): boolean {
  return /^--[A-Za-z0-9-]{1,64}$/.test(name);
}

/**
 * A plain CSS value (`#0a7`, `8px`, `"Inter", system-ui, sans-serif`, `rgb(0 0 0 / 40%)`): no
 * declaration or block breaks (`;{}`), no escapes or comments that could hide them, and nothing
 * that loads a resource (`url(`, `image-set(`, `image(`). The page's CSP (img-src 'self' data: blob:)
 * would refuse a foreign load anyway; this keeps the theme to colours, lengths and font names.
 */
export function isPlainCssValue(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 200) return false;
  if (/[;{}\\<>\n\r]|\/\*|\*\//.test(value)) return false;
  return !/(url|image-set|-webkit-image-set|image|src|element|expression)\s*\(/i.test(value);
}

/** A configure message as the viewer takes it: only its valid parts, the rest dropped and named. */
export interface Configure {
  lang: string | null;
  strings: Record<string, string>;
  theme: Record<string, string>;
  hide: HideablePart[] | null;
  /** What was dropped (`theme.--x`, `lang`), for the console. */
  ignored: string[];
}

/** Reads `data` as a configure message; null when it is not one (another source, version or type). */
export function configureOf(data: unknown): Configure | null {
  if (typeof data !== 'object' || data === null) return null;
  const message = data as Partial<Record<keyof ConfigureMessage, unknown>>;
  if (message.source !== appMessageSource || message.v !== embedMessagesVersion || message.type !== 'configure') return null;
  const ignored: string[] = [];
  const lang = message.lang === undefined ? null : languageTagOf(message.lang);
  if (message.lang !== undefined && lang === null) ignored.push('lang');
  const strings: Record<string, string> = {};
  for (const [key, value] of entriesOf(message.strings, 'strings', ignored)) {
    if (typeof value === 'string') strings[key] = value;
    else ignored.push(`strings.${key}`);
  }
  const theme: Record<string, string> = {};
  for (const [name, value] of entriesOf(message.theme, 'theme', ignored)) {
    if (isThemeProperty(name) && isPlainCssValue(value)) theme[name] = value;
    else ignored.push(`theme.${name}`);
  }
  let hide: HideablePart[] | null = null;
  if (message.hide !== undefined) {
    if (Array.isArray(message.hide)) hide = hideablePartsOf(message.hide);
    else ignored.push('hide');
  }
  return { lang, strings, theme, hide, ignored };
}

function entriesOf(value: unknown, field: string, ignored: string[]): [string, unknown][] {
  if (value === undefined) return [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ignored.push(field);
    return [];
  }
  return Object.entries(value);
}
