import type { Provider } from './provider.js';

// PLACEHOLDER: being written (issue 4).
export const claudeCode: Provider = {
  name: 'claude-code',
  displayName: 'Claude Code',
  package: null,
  loginCommand: () => ['false'],
  env: () => ({}),
  setupFiles: () => ({}),
  credentialFile: 'credentials.json',
  validate: () => ({ ok: false, waitingFor: 'a provider module' }),
  installPath: (env) => `${env.HOME}/.porthole-claude-code.json`,
  authorizeUrl: null,
};
