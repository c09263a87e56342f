// Each resource acquired while starting a sandbox pushes its undo; a failure unwinds them in
// reverse order, each once, and carries on past an undo that fails so the rest is still released.

export class CleanupStack {
  private undos: Array<{ what: string; undo: () => Promise<void> }> = [];

  push(what: string, undo: () => Promise<void>): void {
    this.undos.push({ what, undo });
  }

  /** The start succeeded: nothing to undo any more. */
  release(): void {
    this.undos = [];
  }

  /** Runs every undo, newest first; returns the ones that failed. */
  async unwind(): Promise<Array<{ what: string; error: unknown }>> {
    const failed: Array<{ what: string; error: unknown }> = [];
    for (let entry = this.undos.pop(); entry; entry = this.undos.pop()) {
      try {
        await entry.undo();
      } catch (error) {
        failed.push({ what: entry.what, error });
      }
    }
    return failed;
  }
}
