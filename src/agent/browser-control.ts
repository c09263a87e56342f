import type { Readable, Writable } from 'node:stream';

// The agent's hold on the sandbox's running Chromium: its DevTools pipe (--remote-debugging-pipe:
// JSON messages ending in NUL, Chromium reading fd 3 and writing fd 4). Opening the sign-in URL
// is then one message, where handing it over by starting a second Chromium process on the same
// profile took 0.2–1.2 s on a busy 2-core host. Only the agent holds the pipe; the person's
// processes (the terminal and what it starts) do not inherit it.

/** Chromium says nothing unasked beyond answers; a longer unanswered line means something is wrong. */
const maxBufferedChars = 1024 * 1024;

export interface BrowserPipes {
  readonly toChild: Writable;
  readonly fromChild: Readable;
}

interface Pending {
  resolve(result: unknown): void;
  reject(error: Error): void;
}

export class BrowserControl {
  #pipes: BrowserPipes | null = null;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #buffer = '';

  /** The pipes of a Chromium just started (again): what came before is gone with it. */
  attach(pipes: BrowserPipes): void {
    this.#failAll(new Error('Chromium restarted'));
    this.#pipes = pipes;
    this.#buffer = '';
    pipes.fromChild.setEncoding('utf8');
    pipes.fromChild.on('data', (chunk: string) => this.#read(chunk));
    pipes.fromChild.on('close', () => {
      if (this.#pipes !== pipes) return;
      this.#pipes = null;
      this.#failAll(new Error('Chromium’s DevTools pipe closed'));
    });
    // EPIPE once Chromium is gone: the close above says so.
    pipes.toChild.on('error', () => {});
    pipes.fromChild.on('error', () => {});
  }

  get isAttached(): boolean {
    return this.#pipes !== null;
  }

  /** Opens `url` in a new tab in front. Rejects when Chromium cannot be asked (not running, restarting) or does not answer. */
  async openTab(url: string, timeoutMs = 5_000): Promise<void> {
    await this.#call('Target.createTarget', { url }, timeoutMs);
  }

  #call(method: string, params: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    const pipes = this.#pipes;
    if (!pipes) return Promise.reject(new Error('Chromium’s DevTools pipe is not open'));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      pipes.toChild.write(`${JSON.stringify({ id, method, params })}\0`);
    });
  }

  #read(chunk: string): void {
    this.#buffer += chunk;
    for (let end = this.#buffer.indexOf('\0'); end >= 0; end = this.#buffer.indexOf('\0')) {
      const text = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 1);
      let message: { id?: unknown; result?: unknown; error?: { message?: unknown; code?: unknown } };
      try {
        message = JSON.parse(text);
      } catch {
        continue;
      }
      // Events carry no id; none is asked for.
      if (typeof message.id !== 'number') continue;
      const pending = this.#pending.get(message.id);
      if (!pending) continue;
      this.#pending.delete(message.id);
      if (message.error) pending.reject(new Error(`Chromium refused: ${String(message.error.message)} (${String(message.error.code)})`));
      else pending.resolve(message.result);
    }
    if (this.#buffer.length > maxBufferedChars) this.#buffer = '';
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}
