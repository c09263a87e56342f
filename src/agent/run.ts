import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { maxRunFileBytes, type AgentConfig, type AgentRunLine, type AgentRunRequest } from '../protocol/agent.js';
import { providers, type Provider, type ProviderContext } from '../providers/index.js';
import { readCredentialFile } from './credential-file.js';
import { describeExit, signalGroup } from './supervised-process.js';

// A run (POST /run) in a sandbox with no desktop: the provider's CLI, non-interactive, with a stored
// credential. The credential file goes where the CLI's storage is pinned (as for the login), the
// request's files into a fresh working directory, and the CLI runs there in its own process group,
// its output streamed back as it comes. At the end the credential file is read back as the CLI left
// it: a CLI that refreshed its grant itself rotated the refresh token, and only that copy is good.

/** SIGTERM at the run's timeout (or when the client goes), SIGKILL this long after. */
const killGraceMs = 5_000;
/** After the CLI exits, how long its output pipes may stay open (a helper that left the group holds them). */
const drainMs = 2_000;
/** The longest `data` of one output line, in UTF-16 code units. */
const maxOutputChunkChars = 64 * 1024;
/** BROWSER in a run: nothing to open a page in, and a CLI that tries learns so at once. */
const noBrowser = '/bin/false';

/** Where a run's lines go; `write` returns false when the client is not keeping up (resume at `drained`). */
export interface RunSink {
  write(line: AgentRunLine): boolean;
  drained(): Promise<void>;
  /** Aborted when the client has gone: the run is killed. */
  readonly signal: AbortSignal;
}

export interface RunnerOptions {
  readonly config: AgentConfig;
  readonly home: string;
  /** The sandbox's environment with the proxy settings (desktop.ts proxyEnv). */
  readonly env: NodeJS.ProcessEnv;
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
}

/** Why the request cannot run (a 400), checked before anything is written; null when it can. */
export function runRequestProblem(request: AgentRunRequest): string | null {
  let bytes = 0;
  for (const [path, content] of Object.entries(request.files)) {
    if (isOutside(path)) return `files: ${path} is not inside the working directory`;
    bytes += Buffer.byteLength(content);
  }
  if (bytes > maxRunFileBytes) return `files: more than ${maxRunFileBytes} bytes together`;
  return null;
}

/** True for a relative path that is absolute, names its directory itself, or leads out of it (the schema refuses these too). */
function isOutside(path: string): boolean {
  const normal = normalize(path);
  return isAbsolute(normal) || normal === '.' || normal === '..' || normal.startsWith(`..${sep}`);
}

/** The one run of a sandbox. */
export class Runner {
  readonly #o: RunnerOptions;
  #isStarted = false;
  /** The agent is stopping: a run still going is killed. */
  readonly #stopping = new AbortController();
  #running: Promise<void> = Promise.resolve();

  constructor(options: RunnerOptions) {
    this.#o = options;
  }

  /** Why a run cannot start here (a 409), or null. */
  refusal(): string | null {
    if (this.#o.config.desktop) return 'this sandbox has a desktop; runs need one started with desktop: false';
    if (this.#isStarted) return 'this sandbox has had its run already';
    return null;
  }

  /**
   * Runs the request, writing its lines to `sink`; resolves after the last one (`exit`, or `error`
   * when it could not start). Call only when refusal() is null: it marks the sandbox used at once.
   */
  run(request: AgentRunRequest, sink: RunSink): Promise<void> {
    this.#isStarted = true;
    this.#running = this.#run(request, { ...sink, signal: AbortSignal.any([sink.signal, this.#stopping.signal]) });
    return this.#running;
  }

  /** Kills a run still going (SIGTERM, SIGKILL after the grace) and resolves once it has ended. Idempotent. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    await this.#running;
  }

  async #run(request: AgentRunRequest, sink: RunSink): Promise<void> {
    const provider = providers[request.provider];
    let prepared: { context: ProviderContext; cwd: string };
    try {
      prepared = await this.#prepare(provider, request);
    } catch (error) {
      // Our own fs errors (a path, an errno): never the credential, which is only ever written.
      this.#o.log('run.failed', { runId: request.runId, error: error instanceof Error ? error.message : String(error) });
      sink.write({ type: 'error', reason: `the run could not be prepared: ${error instanceof Error ? error.message : String(error)}` });
      return;
    }
    if (sink.signal.aborted) return;
    await this.#spawn(provider, request, prepared, sink);
  }

  async #prepare(provider: Provider, request: AgentRunRequest): Promise<{ context: ProviderContext; cwd: string }> {
    const { home, config } = this.#o;
    const credentialDir = join(home, '.porthole', 'run', provider.name);
    const context: ProviderContext = {
      home,
      credentialDir,
      cliDir: config.tools.clis,
      demoCli: config.tools.demoCli,
      openUrlCommand: noBrowser,
      ...(request.demo ? { demo: request.demo } : {}),
    };
    await mkdir(credentialDir, { recursive: true, mode: 0o700 });
    const writeInto = async (dir: string, path: string, content: string): Promise<void> => {
      if (isOutside(path)) throw new Error(`${path} is not inside ${dir}`);
      const target = join(dir, path);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      // wx: a fresh file each, never through something already there.
      await writeFile(target, content, { mode: 0o600, flag: 'wx' });
    };
    for (const [name, content] of Object.entries(provider.setupFiles(context))) await writeInto(credentialDir, name, content);
    await writeInto(credentialDir, provider.credentialFile, request.credential);
    await mkdir(join(home, 'runs'), { recursive: true, mode: 0o700 });
    const cwd = await mkdtemp(join(home, 'runs', 'run-'));
    for (const [path, content] of Object.entries(request.files)) await writeInto(cwd, path, content);
    return { context, cwd };
  }

  #spawn(provider: Provider, request: AgentRunRequest, { context, cwd }: { context: ProviderContext; cwd: string }, sink: RunSink): Promise<void> {
    const argv = [...provider.runCommand(context, request.args)];
    const env = { ...this.#o.env, ...provider.env(context) };
    const { runId } = request;
    return new Promise<void>((done) => {
      let child: ChildProcess;
      try {
        // detached: its own process group (setsid), so the timeout reaches every process it forks.
        child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      } catch (error) {
        sink.write({ type: 'error', reason: `the CLI could not be started: ${error instanceof Error ? error.message : String(error)}` });
        done();
        return;
      }
      let timedOut = false;
      let killTimer: NodeJS.Timeout | null = null;
      const kill = (): void => {
        if (killTimer || child.pid === undefined) return;
        signalGroup(child.pid, 'SIGTERM');
        killTimer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), killGraceMs);
      };
      const timeout = setTimeout(() => {
        timedOut = true;
        this.#o.log('run.timed_out', { runId, pid: child.pid, timeoutMs: request.timeoutMs });
        kill();
      }, request.timeoutMs);
      const onGone = (): void => {
        this.#o.log(this.#stopping.signal.aborted ? 'run.stopping' : 'run.client_gone', { runId, pid: child.pid });
        kill();
      };
      sink.signal.addEventListener('abort', onGone, { once: true });
      const finish = (): void => {
        clearTimeout(timeout);
        if (killTimer) clearTimeout(killTimer);
        sink.signal.removeEventListener('abort', onGone);
        done();
      };

      child.once('error', (error: NodeJS.ErrnoException) => {
        // A failed spawn (ENOENT, EACCES) emits no 'spawn' and perhaps no 'exit'.
        if (child.pid !== undefined) return;
        this.#o.log('run.failed', { runId, error: error.code ?? error.message });
        sink.write({ type: 'error', reason: `the CLI could not be started: ${error.code ?? error.message} (${argv[0]})` });
        finish();
      });
      child.once('spawn', () => {
        this.#o.log('run.started', { runId, provider: provider.name, pid: child.pid });
        // argv holds no credential: it is in a file, and the arguments are the caller's own.
        sink.write({ type: 'started', pid: child.pid!, argv });
        const streams = [forward(child.stdout!, 'stdout', sink), forward(child.stderr!, 'stderr', sink)];
        child.once('exit', (code, signal) => {
          clearTimeout(timeout);
          sink.signal.removeEventListener('abort', onGone);
          // The run is over with its CLI: helpers it left in the group go too.
          signalGroup(child.pid!, 'SIGKILL');
          void Promise.race([Promise.all(streams), new Promise((resolve) => setTimeout(resolve, drainMs))]).then(async () => {
            for (const stream of [child.stdout, child.stderr]) stream?.destroy();
            const read = await readCredentialFile(context.credentialDir, provider.credentialFile).catch(() => null);
            const credential = read?.kind === 'content' ? read.content : null;
            this.#o.log('run.exited', { runId, pid: child.pid, code, signal, exit: describeExit(code, signal), timedOut, hasCredential: credential !== null });
            sink.write({ type: 'exit', code, signal, timedOut, credential });
            finish();
          });
        });
      });
    });
  }
}

/** Forwards a pipe as output lines, decoding UTF-8 across chunks; resolves when it has ended. */
function forward(stream: Readable, name: 'stdout' | 'stderr', sink: RunSink): Promise<void> {
  const decoder = new StringDecoder('utf8');
  const emit = (text: string): void => {
    let isBehind = false;
    for (const data of splitText(text, maxOutputChunkChars)) if (!sink.write({ type: 'output', stream: name, data })) isBehind = true;
    if (isBehind && !stream.isPaused()) {
      stream.pause();
      void sink.drained().then(() => stream.resume());
    }
  };
  stream.on('data', (chunk: Buffer) => {
    const text = decoder.write(chunk);
    if (text) emit(text);
  });
  return new Promise((resolve) => {
    const end = (): void => {
      const rest = decoder.end();
      if (rest) emit(rest);
      resolve();
    };
    stream.once('end', end);
    stream.once('close', resolve);
  });
}

/** Pieces of at most `max` code units, never splitting a surrogate pair. */
function splitText(text: string, max: number): string[] {
  const pieces: string[] = [];
  let at = 0;
  while (text.length - at > max) {
    let cut = at + max;
    const code = text.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
    pieces.push(text.slice(at, cut));
    at = cut;
  }
  pieces.push(text.slice(at));
  return pieces;
}
