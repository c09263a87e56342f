import type { Logger } from 'pino';
import type { Store } from '../../store/store.js';
import type { DiagnoseSession } from '../sessions/diagnosis.js';
import type { NodeClient } from './node-client.js';

export interface ClusterDiagnosisOptions {
  store: Store;
  nodes: NodeClient;
  logger: Logger;
}

/** A server's diagnosis: the store, then the node hop, then the node's own walk (TODO). */
export function createClusterDiagnosis(options: ClusterDiagnosisOptions): DiagnoseSession {
  return async (id) => {
    const session = await options.store.getSession(id);
    const node = session?.node ? await options.store.getNode(session.node.id) : null;
    if (!node) throw new Error('no node');
    return (await options.nodes.diagnose(node, id, 10_000)) as Awaited<ReturnType<DiagnoseSession>>;
  };
}
