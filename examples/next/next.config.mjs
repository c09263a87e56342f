import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// This example takes @porthole/sdk from the repository (`file:../../sdk`, a link to a folder outside
// this one), so the bundler and the output tracing must be allowed to look there. An app that
// installs @porthole/sdk from the registry needs none of this.
const repositoryRoot = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** @type {import('next').NextConfig} */
const config = {
  turbopack: { root: repositoryRoot },
  outputFileTracingRoot: repositoryRoot,
  poweredByHeader: false,
};

export default config;
