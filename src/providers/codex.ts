import type { Provider } from './provider.js';

// PLACEHOLDER: being written (issue 4).
export const codex: Provider = {
  name: 'codex',
  displayName: 'Codex',
  package: null,
  loginCommand: () => ['false'],
  env: () => ({}),
  setupFiles: () => ({}),
  credentialFile: 'credentials.json',
  validate: () => ({ ok: false, waitingFor: 'a provider module' }),
  installPath: (env) => `${env.HOME}/.porthole-codex.json`,
  authorizeUrl: null,
};
