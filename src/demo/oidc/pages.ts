// The demo provider's pages: sign-in, consent and error. Plain HTML forms with no script, made for a
// person working through a remote desktop: large inputs and buttons, a clearly visible focus ring,
// the e-mail field focused on load. Self-contained: the sandbox's browser loads nothing else.
// A bar of the brand blue runs across the top of every page: in a short browser window the form's
// button is below the fold, and the bar is what still says "the provider's page is drawn" at a
// glance, to a person and to bench/start-to-sign-in.ts, which finds the page by that colour.

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const styles = `
  :root { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif;
    font-size: 18px; line-height: 1.45; color: #1d232b; background: #eef1f5; }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: flex-start; justify-content: center; padding: 7vh 16px;
    border-top: 8px solid #2f6fde; }
  main { width: 100%; max-width: 460px; background: #fff; border: 1px solid #dde1e6; border-radius: 10px;
    padding: 36px 40px; box-shadow: 0 2px 12px rgba(20, 30, 50, .08); }
  .brand { display: flex; align-items: center; gap: 12px; margin: 0 0 6px; }
  .brand svg { flex: none; }
  h1 { font-size: 26px; margin: 0; letter-spacing: -.01em; }
  .lead { color: #4b5563; margin: 4px 0 24px; }
  label { display: block; font-weight: 600; margin: 18px 0 6px; }
  input { width: 100%; font: inherit; font-size: 20px; padding: 12px 14px; border: 2px solid #a9b1bc; border-radius: 8px; background: #fff; color: inherit; }
  input:focus { outline: 3px solid #2f6fde; outline-offset: 2px; border-color: #2f6fde; }
  button { font: inherit; font-size: 20px; font-weight: 600; padding: 13px 20px; border-radius: 8px; cursor: pointer; border: 2px solid transparent; }
  button:focus-visible { outline: 3px solid #2f6fde; outline-offset: 3px; }
  .primary { width: 100%; margin-top: 26px; background: #2f6fde; color: #fff; }
  .primary:hover { background: #2358b8; }
  .actions { display: flex; gap: 12px; margin-top: 26px; }
  .actions form { flex: 1; }
  .actions .primary { margin-top: 0; }
  .secondary { width: 100%; background: #fff; color: #1d232b; border-color: #a9b1bc; }
  .secondary:hover { background: #f3f4f6; }
  .error { background: #fde4e1; color: #8c1d13; border: 1px solid #f3b6ae; border-radius: 8px; padding: 12px 14px; margin: 0 0 8px; font-weight: 600; }
  .hint { color: #4b5563; font-size: 16px; margin: 22px 0 0; padding-top: 16px; border-top: 1px solid #e5e7eb; }
  .hint code { font-size: 16px; background: #f3f4f6; padding: 1px 5px; border-radius: 4px; }
  ul.scopes { list-style: none; padding: 0; margin: 0; border: 1px solid #e5e7eb; border-radius: 8px; }
  ul.scopes li { padding: 12px 14px; border-top: 1px solid #e5e7eb; }
  ul.scopes li:first-child { border-top: 0; }
  .who { background: #f3f6fb; border-radius: 8px; padding: 10px 14px; margin: 0 0 18px; }
`;

const logo = `<svg width="36" height="36" viewBox="0 0 36 36" aria-hidden="true"><circle cx="18" cy="18" r="16" fill="#2f6fde"/><circle cx="18" cy="18" r="9" fill="none" stroke="#fff" stroke-width="3"/></svg>`;

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · porthole demo</title>
<style>${styles}</style>
</head>
<body>
<main>
<div class="brand">${logo}<h1>porthole demo</h1></div>
${body}
</main>
</body>
</html>`;
}

export interface LoginPageOptions {
  readonly uid: string;
  readonly clientName: string;
  /** What the person typed last time, so a retry only needs the password. */
  readonly email?: string;
  readonly error?: string;
  /** Shown when the demo account still has its documented defaults. */
  readonly hint?: { readonly email: string; readonly password: string } | null;
}

export function loginPage(options: LoginPageOptions): string {
  const email = options.email ?? '';
  // Focus the field the person has to type into next.
  const focusEmail = email === '' ? ' autofocus' : '';
  const focusPassword = email === '' ? '' : ' autofocus';
  return layout(
    'Sign in',
    `<p class="lead">Sign in to continue to <strong>${escapeHtml(options.clientName)}</strong>.</p>
${options.error ? `<p class="error" role="alert">${escapeHtml(options.error)}</p>` : ''}
<form method="post" action="/interaction/${encodeURIComponent(options.uid)}/login" autocomplete="on">
  <label for="email">E-mail</label>
  <input id="email" name="email" type="email" inputmode="email" autocomplete="username" spellcheck="false" autocapitalize="off" required value="${escapeHtml(email)}"${focusEmail}>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required${focusPassword}>
  <button class="primary" type="submit">Sign in</button>
</form>
${
  options.hint
    ? `<p class="hint">Demo account: <code>${escapeHtml(options.hint.email)}</code>, password <code>${escapeHtml(options.hint.password)}</code>.</p>`
    : ''
}`,
  );
}

const scopeDescriptions: Record<string, string> = {
  openid: 'Know who you are',
  email: 'See your e-mail address',
  profile: 'See your name',
  offline_access: 'Stay signed in until you sign out',
};

export function consentPage(options: { uid: string; clientName: string; email: string; scopes: readonly string[] }): string {
  const items = options.scopes.map((scope) => `<li>${escapeHtml(scopeDescriptions[scope] ?? scope)}</li>`).join('\n    ');
  const action = `/interaction/${encodeURIComponent(options.uid)}`;
  return layout(
    'Allow access',
    `<p class="lead"><strong>${escapeHtml(options.clientName)}</strong> wants to access your account.</p>
<p class="who">Signed in as <strong>${escapeHtml(options.email)}</strong></p>
<p>It will be able to:</p>
<ul class="scopes">
    ${items}
</ul>
<div class="actions">
  <form method="post" action="${action}/abort"><button class="secondary" type="submit">Cancel</button></form>
  <form method="post" action="${action}/confirm"><button class="primary" type="submit" autofocus>Allow</button></form>
</div>`,
  );
}

export function errorPage(title: string, message: string): string {
  return layout(title, `<p class="error" role="alert">${escapeHtml(title)}</p><p>${escapeHtml(message)}</p>`);
}
