import { NodeFS } from '@electric-sql/pglite/nodefs';

// PGlite's database directory on the host, with every file owner-only (0600; directories 0700).
// PGlite's Emscripten filesystem chmods each file it creates to the mode the wasm asked for
// (0666 or 0644), after the fact, so the process umask does not reach them: its WAL and relation
// files would be world-readable and -writable, which let another local user read the database and
// write an API-key row. Here that chmod keeps the owner's bits only.

type InitOptions = Parameters<NodeFS['init']>[1];
type EmscriptenFs = { chmod(path: unknown, mode: number, dontFollow?: boolean): void };

export class OwnerOnlyNodeFS extends NodeFS {
  override async init(pg: Parameters<NodeFS['init']>[0], opts: InitOptions): ReturnType<NodeFS['init']> {
    const { emscriptenOpts } = await super.init(pg, opts);
    const ownerOnly = (mod: { FS: unknown }) => {
      const fs = mod.FS as EmscriptenFs;
      const chmod = fs.chmod.bind(fs);
      fs.chmod = (path, mode, dontFollow) => chmod(path, mode & ~0o077, dontFollow);
    };
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [...(emscriptenOpts.preRun ?? []), ownerOnly] } };
  }
}
