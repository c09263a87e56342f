import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// The SDK is its own package (sdk/, @porthole/sdk): it may import its own modules, Node's, and the
// packages its package.json names, never porthole's src/ (which it does not ship). Its browser
// entry imports nothing a browser lacks. dependency-cruiser runs over src/ only; this holds sdk/.

const root = fileURLToPath(new URL('../../../', import.meta.url));
const sdkSrc = join(root, 'sdk/src');

async function sources(): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  for (const entry of await readdir(sdkSrc, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const path = join(entry.parentPath, entry.name);
    const text = await readFile(path, 'utf8');
    // import … from '…', export … from '…', import '…', import('…')
    const specifiers = [
      ...text.matchAll(
        /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g,
      ),
    ].map((m) => (m[1] ?? m[2] ?? m[3])!);
    found.set(relative(root, path), specifiers);
  }
  return found;
}

test('sdk/src imports only itself, node: modules and the packages in sdk/package.json', async () => {
  const pkg = JSON.parse(await readFile(join(root, 'sdk/package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  const allowed = new Set(Object.keys(pkg.dependencies ?? {}));
  const bad: string[] = [];
  const files = await sources();
  assert.ok(files.size >= 5, `found the SDK's sources (${[...files.keys()].join(', ')})`);
  for (const [file, specifiers] of files) {
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) {
        const target = resolve(root, dirname(file), specifier);
        if (!target.startsWith(`${sdkSrc}/`)) bad.push(`${file}: ${specifier} (outside sdk/src)`);
      } else if (!specifier.startsWith('node:')) {
        const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
        if (!allowed.has(name)) bad.push(`${file}: ${specifier} (not a dependency in sdk/package.json)`);
      }
    }
  }
  assert.deepEqual(bad, []);
});

test('the browser entry and what it imports use no Node module and no package', async () => {
  const files = await sources();
  const seen = new Set<string>();
  const bad: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const specifier of files.get(file) ?? []) {
      if (specifier.startsWith('.')) visit(relative(root, resolve(root, dirname(file), specifier.replace(/\.js$/, '.ts'))));
      else bad.push(`${file}: ${specifier}`);
    }
  };
  visit('sdk/src/browser.ts');
  assert.deepEqual(bad, []);
});

test("every entry of the package's exports map has a source file", async () => {
  const pkg = JSON.parse(await readFile(join(root, 'sdk/package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
  const files = await sources();
  for (const [entry, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string') continue; // ./package.json
    assert.ok(target.types?.startsWith('./dist/') && target.types.endsWith('.d.ts'), `${entry} has types`);
    const source = `sdk/src/${target.default!.slice('./dist/'.length).replace(/\.js$/, '.ts')}`;
    assert.ok(files.has(source), `${entry} → ${target.default} is built from ${source}`);
  }
});
