import type { Logger } from 'pino';
import { AppError } from '../../protocol/errors.js';
import type { RunId } from '../../protocol/ids.js';
import type { CreateRunBody, Run } from '../../protocol/runs.js';
import type { NodeRecord, Store } from '../../store/store.js';
import type { NodeClient } from './node-client.js';

// A `porthole server`'s runs: it runs no sandbox, so a run goes to the least loaded live node with
// room (its output reaches the store, which every server reads); stopping one asks the nodes until
// the one that holds it answers.

export interface ClusterRunsOptions {
  store: Store;
  nodes: NodeClient;
  log: Logger;
}

/** Live and taking work: active, with a heartbeat inside its lease. */
export function isTakingWork(node: NodeRecord): boolean {
  return node.state === 'active' && node.heartbeatAgeMs < node.leaseMs && node.url !== null;
}

export class ClusterRuns {
  readonly #o: ClusterRunsOptions;

  constructor(options: ClusterRunsOptions) {
    this.#o = options;
  }

  async create(body: CreateRunBody, apiKeyId: string | null): Promise<Run> {
    const nodes = (await this.#o.store.listNodes()).filter(isTakingWork).sort((a, b) => a.load / Math.max(1, a.capacity) - b.load / Math.max(1, b.capacity));
    const node = nodes[0];
    if (!node) throw new AppError('NO_CAPACITY', { message: 'No porthole node is live and taking work to run the CLI on.' });
    this.#o.log.info({ nodeId: node.id }, 'run placed');
    return this.#o.nodes.createRun(node, body, apiKeyId);
  }

  async cancel(id: RunId): Promise<Run> {
    for (const node of (await this.#o.store.listNodes()).filter((n) => n.state !== 'dead' && n.url !== null)) {
      try {
        return await this.#o.nodes.cancelRun(node, id);
      } catch (error) {
        if (error instanceof AppError && (error.code === 'RUN_ELSEWHERE' || error.code === 'NODE_UNREACHABLE')) continue;
        throw error;
      }
    }
    const run = await this.#o.store.getRun(id);
    if (!run) throw new AppError('RUN_NOT_FOUND', { details: { runId: id } });
    if (run.state === 'starting' || run.state === 'running') throw new AppError('RUN_ELSEWHERE', { details: { runId: id } });
    return run;
  }
}
