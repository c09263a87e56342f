import { randomBytes } from 'node:crypto';
import { link, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname } from 'node:path';
import type { CredentialResponse } from '../protocol/credentials.js';
import { AppError } from '../protocol/errors.js';
import { providerNames, type ProviderName } from '../protocol/session-states.js';
import { providers } from '../providers/index.js';

// `porthole credentials install`: puts a captured credential file where that provider's CLI looks
// for it on this machine, readable by its owner only.

/**
 * Writes the credential to the provider's install path with mode 0600 and returns the path. An
 * existing file is kept unless `force` (AppError CREDENTIAL_FILE_EXISTS). The file appears whole or
 * not at all: a temp file beside it is linked (no force: fails if one appeared) or renamed into place.
 */
export async function installCredential(
  credential: CredentialResponse,
  options: { force: boolean; env: Readonly<Record<string, string | undefined>> },
): Promise<string> {
  if (!(providerNames as readonly string[]).includes(credential.provider)) {
    throw new AppError('PROVIDER_UNKNOWN', {
      message: `This porthole CLI does not know the provider "${credential.provider}"; use porthole credentials get instead.`,
    });
  }
  const provider = providers[credential.provider as ProviderName];
  const path = provider.installPath({ ...options.env, HOME: options.env.HOME ?? homedir() });
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.porthole-${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, credential.file, { flag: 'wx', mode: 0o600 });
  try {
    if (options.force) await rename(temp, path);
    else await link(temp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new AppError('CREDENTIAL_FILE_EXISTS', { message: `${path} already exists; porthole does not replace it without --force.` });
    }
    throw error;
  } finally {
    await unlink(temp).catch(() => {}); // after a rename it is gone already
  }
  return path;
}

/** What `credentials install` says when it writes the refresh token too. */
export const refresherWarning =
  'warning: this file holds the refresh token porthole keeps fresh. If the CLI on this machine refreshes it, ' +
  "the provider rotates the grant away from porthole; porthole's next refresh then uses a spent token, and " +
  'providers that detect reuse revoke the grant: the person is signed out everywhere. Use --access-only to ' +
  'install the access token alone (porthole stays the one refresher).\n';

/**
 * The credential file without its refresh token (`refresh_token`, `refreshToken`, at any depth: the
 * four providers' formats name it so). A CLI that finds none uses the access token until it expires,
 * then asks for a sign-in instead of refreshing the grant porthole holds.
 */
export function withoutRefreshToken(content: string): string {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (typeof value !== 'object' || value === null) return value;
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key]) => key !== 'refresh_token' && key !== 'refreshToken')
        .map(([key, inner]) => [key, strip(inner)]),
    );
  };
  return `${JSON.stringify(strip(JSON.parse(content)), null, 2)}\n`;
}
