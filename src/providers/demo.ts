import type { Provider } from './provider.js';

// PLACEHOLDER: being written (issue 4).
export const demo: Provider = {
  name: 'demo',
  displayName: 'porthole demo',
  package: null,
  loginCommand: () => ['false'],
  env: () => ({}),
  setupFiles: () => ({}),
  credentialFile: 'credentials.json',
  validate: () => ({ ok: false, waitingFor: 'a provider module' }),
  installPath: (env) => `${env.HOME}/.porthole-demo.json`,
  authorizeUrl: null,
};
