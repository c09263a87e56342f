import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

// The Debian packages a local sandbox runs on live in one file, scripts/sandbox-packages.txt: a
// plain list because scripts/setup.sh installs from it before anything is built, and
// `porthole doctor` checks the same list through this module.

/** scripts/sandbox-packages.txt, from dist/src/cli/ (the checkout's root is three levels up, as for clis/). */
export const sandboxPackagesFile = fileURLToPath(new URL('../../../scripts/sandbox-packages.txt', import.meta.url));

export interface SandboxPackage {
  readonly name: string;
  /** What the sandbox needs it for, as doctor says it. */
  readonly why: string;
}

/** `<name> <why…>` a line; blank lines and lines starting with # are left out (setup.sh reads it the same way). */
export function parseSandboxPackages(text: string): SandboxPackage[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [name = '', ...why] = line.split(/\s+/);
      return { name, why: why.join(' ') };
    });
}

export async function readSandboxPackages(file = sandboxPackagesFile): Promise<SandboxPackage[]> {
  return parseSandboxPackages(await readFile(file, 'utf8'));
}
