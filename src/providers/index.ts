import type { ProviderName } from '../protocol/session-states.js';
import { claudeCode } from './claude-code.js';
import { codex } from './codex.js';
import { demo } from './demo.js';
import { geminiCli } from './gemini-cli.js';
import type { Provider } from './provider.js';

export type { CredentialCheck, Provider, ProviderContext } from './provider.js';

/** Every provider by name, in the order the dashboard offers them (demo first: it needs no internet). */
export const providers: Readonly<Record<ProviderName, Provider>> = {
  demo,
  'claude-code': claudeCode,
  codex,
  'gemini-cli': geminiCli,
};
