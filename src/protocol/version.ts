// The build (scripts/build.mjs) replaces __PORTHOLE_VERSION__ with package.json's version, so the
// server and the agent bundle each carry the version they were built from; readiness compares them.
declare const __PORTHOLE_VERSION__: string;

export const version: string = typeof __PORTHOLE_VERSION__ === 'string' ? __PORTHOLE_VERSION__ : '0.0.0-dev';
