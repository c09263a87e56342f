// The import direction of STYLE.md, held by `npm run lint` (part of `npm test`).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'protocol-imports-nothing',
      comment: 'src/protocol is shared by server, agent and viewer: schemas and constants only, no I/O, no other layer.',
      severity: 'error',
      from: { path: '^src/protocol/' },
      to: { path: '^src/(?!protocol/)' },
    },
    {
      name: 'protocol-no-node-io',
      comment: 'src/protocol runs in browsers too.',
      severity: 'error',
      from: { path: '^src/protocol/' },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'drivers-and-store-never-import-server',
      severity: 'error',
      from: { path: '^src/(drivers|store)/' },
      to: { path: '^src/(server|cli|viewer)/' },
    },
    {
      name: 'drivers-and-store-are-independent',
      severity: 'error',
      from: { path: '^src/drivers/' },
      to: { path: '^src/store/' },
    },
    {
      name: 'store-never-imports-drivers',
      severity: 'error',
      from: { path: '^src/store/' },
      to: { path: '^src/drivers/' },
    },
    {
      name: 'only-main-picks-concrete-backends',
      comment:
        'Concrete drivers and stores are chosen in src/server/main.ts alone; everything else uses the interfaces. ' +
        'Except gvisor/probe.ts: `porthole doctor` starts a probe sandbox with runsc, which is no driver.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/server/main\\.ts$', '^src/drivers/local/', '^src/drivers/gvisor/', '^src/store/postgres/'] },
      to: { path: ['^src/drivers/local/', '^src/drivers/gvisor/', '^src/store/postgres/'], pathNot: '^src/drivers/gvisor/probe\\.ts$' },
    },
    {
      name: 'agent-stays-small',
      comment: 'The agent is bundled into sandboxes and images: it may use only protocol, providers and its own modules.',
      severity: 'error',
      from: { path: '^src/agent/' },
      to: { path: '^src/(?!agent/|protocol/|providers/)' },
    },
    {
      name: 'providers-are-pure',
      comment: 'src/providers is data and validators shared by agent, server and CLI: protocol only, no I/O.',
      severity: 'error',
      from: { path: '^src/providers/' },
      to: { path: '^src/(?!providers/|protocol/)' },
    },
    {
      name: 'viewer-is-browser-code',
      severity: 'error',
      from: { path: '^src/viewer/' },
      to: { path: '^src/(?!viewer/|protocol/)' },
    },
    {
      name: 'demo-cli-stays-small',
      comment: 'The demo CLI is bundled into sandboxes beside the agent: protocol and providers only.',
      severity: 'error',
      from: { path: '^src/demo/cli/' },
      to: { path: '^src/(?!demo/cli/|protocol/|providers/)' },
    },
    {
      name: 'demo-oidc-only-from-server',
      comment: 'The demo OpenID Connect provider runs in the server process; nothing else loads it.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/server/', '^src/demo/oidc/'] },
      to: { path: '^src/demo/oidc/' },
    },
    {
      name: 'demo-oidc-imports-no-other-layer',
      comment: 'The demo provider is self-contained: its own modules, protocol and providers.',
      severity: 'error',
      from: { path: '^src/demo/oidc/' },
      to: { path: '^src/(?!demo/oidc/|protocol/|providers/)' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js'] },
  },
};
