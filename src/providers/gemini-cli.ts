import type { Provider } from './provider.js';

// PLACEHOLDER: being written (issue 4).
export const geminiCli: Provider = {
  name: 'gemini-cli',
  displayName: 'Gemini CLI',
  package: null,
  loginCommand: () => ['false'],
  env: () => ({}),
  setupFiles: () => ({}),
  credentialFile: 'credentials.json',
  validate: () => ({ ok: false, waitingFor: 'a provider module' }),
  installPath: (env) => `${env.HOME}/.porthole-gemini-cli.json`,
  authorizeUrl: null,
};
