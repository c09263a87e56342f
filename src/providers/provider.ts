import type { CredentialVerification } from '../protocol/credentials.js';
import type { ProviderName } from '../protocol/session-states.js';

// A provider is data plus a little code (DESIGN.md, Providers): what the agent runs in the
// sandbox's terminal, how the CLI's credential storage is pinned to a directory the agent watches,
// which file in it is the credential, how to tell a finished file from a half-written one, and how
// the server checks a delivered file before it believes it. Pure: `verify` is the one step that
// may talk to a provider, through the fetch the server hands it. The agent (inside the sandbox),
// the server and the CLI all import it.

/** Where things are for one login, as the sandbox (or, for `installPath`, this machine) sees them. */
export interface ProviderContext {
  /** The sandbox user's HOME. */
  readonly home: string;
  /** The directory the CLI's credential storage is pinned to; the agent watches it. Exists, empty. */
  readonly credentialDir: string;
  /** Where the pinned CLIs are installed: `<cliDir>/node_modules/.bin/<bin>`. */
  readonly cliDir: string;
  /** A command that opens a URL in the sandbox's Chromium (what BROWSER is set to). */
  readonly openUrlCommand: string;
  /** For `demo`: porthole's demo OpenID Connect provider. */
  readonly demo?: { readonly issuer: string; readonly clientId: string };
  /** For `demo`: the bundled demo CLI (the agent config's `tools.demoCli`); default /opt/porthole/demo-cli.mjs. */
  readonly demoCli?: string;
}

export type CredentialCheck =
  | {
      readonly ok: true;
      /** ISO time the access token expires, when the file says (null when it does not). */
      readonly expiresAt: string | null;
      /** Who signed in (e-mail or subject), when the file says; shown as "Connected as …". */
      readonly account: string | null;
    }
  | {
      readonly ok: false;
      /** What is missing, as a timeline can show it: "a refresh token", "valid JSON", … Never file content. */
      readonly waitingFor: string;
    };

/** What the server hands `verify`. */
export interface VerifyContext {
  /** The demo provider this server runs (its own issuer, never one a file names); absent when it is off. */
  readonly demo?: { readonly issuer: string; readonly clientId: string };
  /** The only I/O a provider module does; the server passes its own (tests may pass another). */
  readonly fetch: typeof fetch;
  /** Aborts the provider's requests (the server's deadline). */
  readonly signal: AbortSignal;
}

export type CredentialVerdict =
  | {
      readonly ok: true;
      readonly verification: CredentialVerification;
      /** Who signed in: the provider's word when `verified`, else what the file claims. */
      readonly account: string | null;
      /** ISO time the access token expires. */
      readonly expiresAt: string | null;
    }
  | {
      readonly ok: false;
      /** Why, as a session's detail can show it: names the part that failed, never file content. */
      readonly reason: string;
      /** The provider could not be asked (network, 5xx): the file may be fine; ask again later. */
      readonly isRetryable: boolean;
    };

/**
 * What a refresh grant came to. `refused`: the provider said the grant is gone (`invalid_grant`, a
 * revoked or reused refresh token): only a new sign-in helps. Otherwise the provider could not be
 * asked or answered oddly (network, 5xx, 429): try again later with the same file.
 */
export type RefreshOutcome =
  | {
      readonly ok: true;
      /** The credential file with the new access token, its expiry and (when the provider rotated it) the new refresh token. */
      readonly content: string;
      /** ISO time the new access token expires (null when the provider does not say). */
      readonly expiresAt: string | null;
    }
  | {
      readonly ok: false;
      readonly refused: boolean;
      /** Why, as an event can show it: the provider's error code and description, never a token. */
      readonly reason: string;
    };

/** An access token alone, as `GET …/credentials/access-token` hands it out. */
export interface AccessToken {
  readonly accessToken: string;
  /** ISO time it expires, when the file says. */
  readonly expiresAt: string | null;
  /** How the provider's API takes it (`Bearer`). */
  readonly tokenType: string;
}

export interface Provider {
  readonly name: ProviderName;
  /** What people read: `providerLabels[name]` (src/protocol/session-states.ts), where every side finds it. */
  readonly displayName: string;
  /** The npm package the project's set-up installs into the sandbox's CLI directory; null for `demo`. */
  readonly package: { readonly name: string; readonly version: string } | null;
  /** argv the agent runs in the terminal window (through xterm -e). */
  loginCommand(context: ProviderContext): readonly string[];
  /** Environment added to the login: pins the credential storage to `credentialDir`. */
  env(context: ProviderContext): Readonly<Record<string, string>>;
  /** Files written before the login starts, relative to `credentialDir` (e.g. Codex's config.toml). */
  setupFiles(context: ProviderContext): Readonly<Record<string, string>>;
  /** The credential file, relative to `credentialDir`. */
  readonly credentialFile: string;
  /** Parses and checks the credential file's content. Never throws; never echoes content. */
  validate(content: string): CredentialCheck;
  /**
   * The server's check of a delivered file that validated, before the session completes: with the
   * provider where porthole can reach it (demo), else offline (shape, token formats, the ID token's
   * issuer). A forged file must not pass. Never throws; never echoes content. Idempotent for the
   * same file (it never uses a refresh token: that would rotate it).
   */
  verify(content: string, context: VerifyContext): Promise<CredentialVerdict>;
  /**
   * The refresh grant as the pinned CLI sends it (its token endpoint, client id and body; each module
   * cites the CLI file and version it took them from), and the file rewritten with the answer the way
   * the CLI itself writes it. Uses the refresh token, which the provider may rotate: the caller stores
   * the new file before anything else uses the grant. Talks to the provider only through
   * `context.fetch`; never throws; never echoes a token.
   */
  refresh(content: string, context: VerifyContext): Promise<RefreshOutcome>;
  /** The access token in a credential file that validated; null when it has none. Never the refresh token. */
  accessToken(content: string): AccessToken | null;
  /**
   * argv of a non-interactive run with the installed credential (`claude -p …`, `codex exec …`,
   * `gemini -p …`, the demo CLI's `run …`), `args` appended; env() pins the credential storage as
   * for the login.
   */
  runCommand(context: ProviderContext, args: readonly string[]): readonly string[];
  /** Where `porthole credentials install` writes the file on this machine. */
  installPath(env: Readonly<Record<string, string | undefined>> & { readonly HOME: string }): string;
  /** The authorization endpoint the CLI opens in the browser (host and path), for tests and the timeline. */
  readonly authorizeUrl: { readonly host: string; readonly path: string } | null;
}
