import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseHcl } from '@cdktf/hcl2json';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Namespace, Service } from 'kubernetes-models/v1';
import ts from 'typescript';
import { isMap, isScalar, parseAllDocuments, parseDocument, type Pair } from 'yaml';

// deploy/: the Kubernetes manifests and the Nomad jobs. No cluster, no Nomad and no container
// runtime run on this machine, so what is checked here is what can be checked without one:
// - every Kubernetes object, as written and as `kubectl kustomize` renders it, against the
//   Kubernetes API's schema, twice: kubernetes-models' validators (JSON Schema compiled from the
//   API's OpenAPI document: types, required fields, enums, formats) and its TypeScript types
//   (the same document; TypeScript's excess-property check finds unknown fields, which the JSON
//   Schema lets through and `kubectl apply` refuses);
// - that those checks reject broken objects (so a pass means something);
// - what the manifests promise: the node's privileges are the ones its comment names, the probes
//   hit /healthz and /readyz on each role's port, secrets come from secretKeyRef, the drain fits
//   in the grace period, the PodDisruptionBudget selects the servers;
// - the Nomad jobs parse with HashiCorp's own HCL parser and say the same things.

const root = fileURLToPath(new URL('../../../', import.meta.url));
const k8sDir = `${root}deploy/kubernetes/`;
const nomadDir = `${root}deploy/nomad/`;

// Manifests are data: the checks below read them as such.
type Json = any;

/** Each kind the manifests use: its validator and its TypeScript type. A new kind must be added here. */
const kinds: Record<string, { model: new (data: Json) => { validate(): void }; typeModule: string; typeName: string }> = {
  'v1/Namespace': { model: Namespace, typeModule: 'kubernetes-models/v1/Namespace', typeName: 'INamespace' },
  'v1/Service': { model: Service, typeModule: 'kubernetes-models/v1/Service', typeName: 'IService' },
  'apps/v1/Deployment': { model: Deployment, typeModule: 'kubernetes-models/apps/v1/Deployment', typeName: 'IDeployment' },
  'apps/v1/DaemonSet': { model: DaemonSet, typeModule: 'kubernetes-models/apps/v1/DaemonSet', typeName: 'IDaemonSet' },
  'policy/v1/PodDisruptionBudget': {
    model: PodDisruptionBudget,
    typeModule: 'kubernetes-models/policy/v1/PodDisruptionBudget',
    typeName: 'IPodDisruptionBudget',
  },
};

const kindOf = (o: Json) => `${o.apiVersion}/${o.kind}`;
const nameOf = (o: Json) => `${o.kind}/${o.metadata?.name}`;

/** The JSON Schema check: the problems, or [] when the object is valid. */
function schemaProblems(object: Json): string[] {
  const kind = kinds[kindOf(object)];
  if (!kind) return [`${nameOf(object)}: no schema for ${kindOf(object)} in this test`];
  try {
    new kind.model(object).validate();
    return [];
  } catch (error) {
    return [`${nameOf(object)}: ${(error as Error).message}`];
  }
}

/**
 * The TypeScript check: each object as an object literal of its kind's type, in one program.
 * Returns the problems by object (TypeScript reports one per literal: the first it finds).
 */
function typeProblems(objects: Json[]): string[] {
  const file = `${root}test/deploy/manifests-as-types.ts`;
  const startLine: number[] = [];
  const known = objects.flatMap((object, i) => (kinds[kindOf(object)] ? [{ object, i, kind: kinds[kindOf(object)]! }] : []));
  let text = known.map(({ i, kind }) => `import type { ${kind.typeName} as T${i} } from '${kind.typeModule}';\n`).join('');
  let line = known.length;
  for (const { object, i } of known) {
    startLine[i] = line;
    const literal = `export const o${i}: T${i} = ${JSON.stringify(object, null, 2)};\n`;
    text += literal;
    line += literal.split('\n').length - 1;
  }
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, text, language) : getSourceFile(name, language, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    let index = -1;
    startLine.forEach((start, i) => {
      if (start !== undefined && start <= line) index = i;
    });
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n').at(-1);
    return `${index >= 0 ? nameOf(objects[index]) : 'preamble'}: ${message}`;
  });
}

async function kustomization(): Promise<Json> {
  return parseDocument(await readFile(`${k8sDir}kustomization.yaml`, 'utf8')).toJS();
}

/** Every object of every manifest the kustomization lists, as written. */
async function writtenObjects(): Promise<Array<{ file: string; object: Json }>> {
  const out: Array<{ file: string; object: Json }> = [];
  for (const file of (await kustomization()).resources as string[]) {
    for (const doc of parseAllDocuments(await readFile(`${k8sDir}${file}`, 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${file} is valid YAML`);
      const object = doc.toJS();
      if (object !== null) out.push({ file, object });
    }
  }
  return out;
}

const hasKubectl = spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;

/** `kubectl kustomize deploy/kubernetes`: what `kubectl apply -k` would send (offline: local files only). */
function renderedObjects(): Json[] {
  const result = spawnSync('kubectl', ['kustomize', k8sDir], { encoding: 'utf8' });
  assert.equal(result.status, 0, `kubectl kustomize: ${result.stderr}`);
  return parseAllDocuments(result.stdout).map((d) => d.toJS());
}

const byKind = (objects: Json[], kind: string): Json => {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0];
};

const envOf = (container: Json): Map<string, Json> => new Map((container.env ?? []).map((e: Json) => [e.name, e]));

/** A probe's port as a number (a named port is looked up in the container). */
function probePort(container: Json, probe: Json): number {
  const port = probe.httpGet.port;
  if (typeof port === 'number') return port;
  const named = (container.ports ?? []).find((p: Json) => p.name === port);
  assert.ok(named, `the port named ${port} exists on ${container.name}`);
  return named.containerPort;
}

const secretNames = ['DATABASE_URL', 'PORTHOLE_CLUSTER_KEY', 'PORTHOLE_MASTER_KEY', 'PORTHOLE_API_KEY'];

test('the kustomization lists every manifest in deploy/kubernetes, and each holds only known kinds', async () => {
  const listed = ((await kustomization()).resources as string[]).slice().sort();
  const present = (await readdir(k8sDir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
  assert.deepEqual(listed, present);
  const objects = (await writtenObjects()).map((o) => o.object);
  assert.deepEqual(objects.map(kindOf).sort(), ['apps/v1/DaemonSet', 'apps/v1/Deployment', 'policy/v1/PodDisruptionBudget', 'v1/Namespace', 'v1/Service']);
  // No Secret is ever written down: the installation creates it (docs/deploy.md).
  assert.ok(!objects.some((o) => o.kind === 'Secret'));
});

test('every object, as written, is valid against the Kubernetes API schema (types and unknown fields)', async () => {
  const objects = (await writtenObjects()).map((o) => o.object);
  assert.deepEqual(objects.flatMap(schemaProblems), []);
  assert.deepEqual(typeProblems(objects), []);
});

test('every object kubectl kustomize renders is valid too, in the namespace, with the image of the kustomization', async () => {
  assert.ok(hasKubectl, 'kubectl is not installed: scripts/setup.sh --test installs Debian’s kubernetes-client');
  const rendered = renderedObjects();
  const written = (await writtenObjects()).map((o) => o.object);
  assert.deepEqual(rendered.map(nameOf).sort(), written.map(nameOf).sort());
  assert.deepEqual(rendered.flatMap(schemaProblems), []);
  assert.deepEqual(typeProblems(rendered), []);
  const { namespace, images } = await kustomization();
  const image = `${images[0].newName}:${images[0].newTag}`;
  for (const o of rendered) {
    if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, namespace, `${nameOf(o)} in ${namespace}`);
    for (const c of o.spec?.template?.spec?.containers ?? []) assert.equal(c.image, image, `${nameOf(o)} runs ${image}`);
  }
  assert.equal(byKind(rendered, 'Namespace').metadata.name, namespace);
});

test('the checks reject a broken object: a wrong type, a missing field, an unknown field', async () => {
  const daemonSet = byKind(
    (await writtenObjects()).map((o) => o.object),
    'DaemonSet',
  );
  const broken = (change: (o: Json) => void): Json => {
    const copy = structuredClone(daemonSet);
    change(copy);
    return copy;
  };
  // A port as a string: the JSON Schema says integer.
  const wrongType = broken((o) => {
    o.spec.template.spec.containers[0].ports[0].containerPort = '8481';
  });
  assert.match(schemaProblems(wrongType).join('\n'), /containerPort must be integer/);
  assert.equal(typeProblems([wrongType]).length, 1);
  // privileged as a string ("true" is not a boolean to the API server).
  const wrongBoolean = broken((o) => {
    o.spec.template.spec.containers[0].securityContext.privileged = 'true';
  });
  assert.match(schemaProblems(wrongBoolean).join('\n'), /privileged must be boolean/);
  // A container without its image... is allowed by the API (image is optional); without a name it is not.
  const missing = broken((o) => {
    delete o.spec.template.spec.containers[0].name;
  });
  assert.match(schemaProblems(missing).join('\n'), /must have required property '?name'?/);
  // A typo: the JSON Schema lets an unknown field through, the types do not.
  const unknown = broken((o) => {
    const c = o.spec.template.spec.containers[0];
    c.readinessProbes = c.readinessProbe;
    delete c.readinessProbe;
  });
  assert.deepEqual(schemaProblems(unknown), []);
  assert.match(typeProblems([unknown]).join('\n'), /'"?readinessProbes"?' does not exist in type 'IContainer'/);
  // And the kind must be one the test knows.
  assert.match(schemaProblems({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } }).join('\n'), /no schema for v1\/Secret/);
});

test('the node DaemonSet has exactly the privileges the comment on its securityContext names, and none of the host’s namespaces', async () => {
  const text = await readFile(`${k8sDir}node.yaml`, 'utf8');
  const daemonSet = byKind(
    (await writtenObjects()).map((o) => o.object),
    'DaemonSet',
  );
  const pod = daemonSet.spec.template.spec;
  assert.equal(pod.containers.length, 1);
  const container = pod.containers[0];
  // The securityContext is the two settings the comment justifies, nothing else.
  assert.deepEqual(container.securityContext, { privileged: true, runAsUser: 0 });
  assert.equal(pod.securityContext, undefined);
  // The comment: read from the YAML (comments are not in the object), attached to `privileged`.
  const doc = parseDocument(text);
  const securityContext = doc.getIn(['spec', 'template', 'spec', 'containers', 0, 'securityContext'], true);
  assert.ok(isMap(securityContext));
  assert.ok(securityContext.items.some((p: Pair) => isScalar(p.key) && p.key.value === 'privileged'));
  const comment = securityContext.commentBefore ?? '';
  for (const said of [
    'privileged: true is what the sandbox driver needs',
    'Root (uid 0)',
    'namespaces',
    'seccomp',
    'AppArmor',
    '/proc',
    '/sys/fs/cgroup read-only',
    'CAP_SETUID',
    'CAP_SYS_PTRACE',
    'runsc',
    'not the host',
    'emptyDir',
    'no API token',
  ]) {
    assert.ok(comment.includes(said), `the comment above privileged says: ${said}`);
  }
  // …and what it says is held off is held off.
  assert.equal(pod.hostNetwork, false);
  assert.equal(pod.hostPID, false);
  assert.equal(pod.hostIPC, false);
  assert.equal(pod.automountServiceAccountToken, false);
  assert.equal(pod.runtimeClassName, undefined, 'no gVisor RuntimeClass around the node (docs/ARCHITECTURE.md)');
  assert.deepEqual(
    pod.volumes.map((v: Json) => Object.keys(v).filter((k) => k !== 'name')),
    [['emptyDir']],
    'the data directory is an emptyDir; no hostPath',
  );
  assert.ok(pod.nodeSelector?.['porthole-sandbox-host'] === 'true', 'only on the hosts set aside');
  // Rolling one host at a time, never two node pods on one host.
  assert.deepEqual(daemonSet.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
});

test('the node: its id and URL from the downward API, a grace period longer than its drain, memory for its capacity', async () => {
  const pod = byKind(
    (await writtenObjects()).map((o) => o.object),
    'DaemonSet',
  ).spec.template.spec;
  const container = pod.containers[0];
  const env = envOf(container);
  const names = [...env.keys()];
  assert.deepEqual(env.get('PORTHOLE_NODE_ID').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  assert.deepEqual(env.get('POD_IP').valueFrom, { fieldRef: { fieldPath: 'status.podIP' } });
  assert.equal(env.get('PORTHOLE_NODE_URL').value, 'http://$(POD_IP):8481');
  // Kubernetes expands $(VAR) only from variables defined earlier in the list.
  assert.ok(names.indexOf('POD_IP') < names.indexOf('PORTHOLE_NODE_URL'));
  assert.equal(env.get('PORTHOLE_HOST').value, '0.0.0.0');
  assert.equal(env.get('PORTHOLE_PORT').value, '8481');
  const drainMs = Number(env.get('PORTHOLE_DRAIN_TIMEOUT_MS').value);
  assert.equal(drainMs, 600_000);
  assert.ok(pod.terminationGracePeriodSeconds * 1000 >= drainMs + 30_000, 'the kubelet waits for the drain and half a minute more');
  const capacity = Number(env.get('PORTHOLE_NODE_CAPACITY').value);
  const gib = (q: string) => Number(/^(\d+)Gi$/.exec(q)?.[1] ?? Number.NaN);
  // A sandbox meets its own limit (1 GiB by default) long before the pod meets its own.
  assert.ok(gib(container.resources.requests.memory) >= capacity, 'the request reserves the capacity');
  assert.ok(gib(container.resources.limits.memory) >= capacity + 2, 'the limit leaves room for the node and the warm pool');
  assert.equal(container.resources.limits.cpu, undefined, 'no CPU throttling of desktops');
  assert.equal(env.get('PORTHOLE_DATA_DIR').value, container.volumeMounts[0].mountPath);
});

test('probes: /healthz for liveness and /readyz for readiness, on each role’s own port', async () => {
  const objects = (await writtenObjects()).map((o) => o.object);
  for (const [kind, port] of [
    ['Deployment', 8480],
    ['DaemonSet', 8481],
  ] as const) {
    const container = byKind(objects, kind).spec.template.spec.containers[0];
    assert.equal(container.livenessProbe.httpGet.path, '/healthz', `${kind} liveness`);
    assert.equal(container.readinessProbe.httpGet.path, '/readyz', `${kind} readiness`);
    assert.equal(probePort(container, container.livenessProbe), port, `${kind} liveness port`);
    assert.equal(probePort(container, container.readinessProbe), port, `${kind} readiness port`);
    assert.equal(Number(envOf(container).get('PORTHOLE_PORT').value), port, `${kind} listens where it is probed`);
  }
});

test('secrets come from secretKeyRef, never from a literal value', async () => {
  const objects = (await writtenObjects()).map((o) => o.object);
  const wanted: Record<string, string[]> = {
    Deployment: secretNames,
    DaemonSet: secretNames.filter((n) => n !== 'PORTHOLE_API_KEY'),
  };
  for (const [kind, names] of Object.entries(wanted)) {
    const env = envOf(byKind(objects, kind).spec.template.spec.containers[0]);
    for (const name of names) {
      const entry = env.get(name);
      assert.ok(entry, `${kind} has ${name}`);
      assert.equal(entry.value, undefined, `${kind} ${name} has no literal value`);
      assert.equal(entry.valueFrom?.secretKeyRef?.name, 'porthole', `${kind} ${name} from the Secret porthole`);
    }
    // Nothing that looks like a secret is given literally.
    for (const [name, entry] of env) {
      if (/KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL/.test(name)) assert.equal(entry.value, undefined, `${kind} ${name} is not literal`);
    }
  }
});

test('the servers: two, unprivileged, one Service and a PodDisruptionBudget that select them', async () => {
  const objects = (await writtenObjects()).map((o) => o.object);
  const deployment = byKind(objects, 'Deployment');
  const labels = deployment.spec.template.metadata.labels;
  const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
  assert.equal(deployment.spec.replicas, 2);
  const pdb = byKind(objects, 'PodDisruptionBudget');
  assert.ok(selects(pdb.spec.selector.matchLabels), 'the PodDisruptionBudget selects the server pods');
  assert.equal(pdb.spec.selector.matchExpressions, undefined);
  assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < deployment.spec.replicas);
  const node = byKind(objects, 'DaemonSet');
  const nodeLabels = node.spec.template.metadata.labels;
  assert.ok(!Object.entries(pdb.spec.selector.matchLabels).every(([k, v]) => nodeLabels[k] === v), 'and not the node pods');
  const service = byKind(objects, 'Service');
  assert.ok(selects(service.spec.selector), 'the Service selects the server pods');
  assert.ok(!Object.entries(service.spec.selector).every(([k, v]) => nodeLabels[k] === v), 'and not the node pods');
  assert.equal(service.spec.ports[0].targetPort, 'http');
  // The restricted Pod Security Standard's requirements.
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.deepEqual(container.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  assert.equal(pod.automountServiceAccountToken, false);
  // Its data directory is inside a writable emptyDir, a directory of its own (porthole chmods it).
  const dataDir = envOf(container).get('PORTHOLE_DATA_DIR').value as string;
  assert.ok(container.volumeMounts.some((m: Json) => dataDir.startsWith(`${m.mountPath}/`)));
});

// --- Nomad -------------------------------------------------------------------------------------

async function nomadJob(file: string): Promise<{ name: string; job: Json }> {
  const parsed = await parseHcl(file, await readFile(`${nomadDir}${file}`, 'utf8'));
  const names = Object.keys(parsed.job ?? {});
  assert.equal(names.length, 1, `${file} holds one job`);
  return { name: names[0]!, job: parsed.job[names[0]!][0] };
}

/** hcl2json gives each block as a list of bodies: the one body of a block that appears once. */
const only = (blocks: Json, label?: string): Json => {
  const list = label === undefined ? blocks : blocks?.[label];
  assert.ok(Array.isArray(list) && list.length === 1, `one block${label ? ` ${label}` : ''}`);
  return list[0];
};

const durationMs = (d: string): number => {
  const m = /^(\d+)(ms|s|m|h)$/.exec(d);
  assert.ok(m, `a duration: ${d}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
};

/** The variables a task gets: its env block and the names its env templates write. */
function nomadEnvNames(task: Json): string[] {
  const names = Object.keys(only(task.env));
  for (const template of task.template ?? []) {
    if (template.env) names.push(...[...String(template.data).matchAll(/^\s*([A-Z_]+)=/gm)].map((m) => m[1]!));
  }
  return names.sort();
}

test('the Nomad jobs parse (HashiCorp’s HCL parser) and a broken one does not', async () => {
  const files = (await readdir(nomadDir)).sort();
  assert.deepEqual(files, ['porthole-node.nomad.hcl', 'porthole-server.nomad.hcl']);
  for (const file of files) await nomadJob(file);
  await assert.rejects(parseHcl('broken.nomad.hcl', 'job "x" {\n  type = \n}\n'), /Invalid expression/);
});

test('Nomad: a system job for nodes and a service job for servers, same environment, probes and secrets as on Kubernetes', async () => {
  const objects = (await writtenObjects()).map((o) => o.object);
  for (const [file, type, k8sKind, port] of [
    ['porthole-node.nomad.hcl', 'system', 'DaemonSet', 8481],
    ['porthole-server.nomad.hcl', 'service', 'Deployment', 8480],
  ] as const) {
    const { job } = await nomadJob(file);
    assert.equal(job.type, type, `${file}: ${type}`);
    const groupName = Object.keys(job.group)[0]!;
    const group = only(job.group, groupName);
    const taskName = Object.keys(group.task)[0]!;
    const task = only(group.task, taskName);
    assert.equal(task.driver, 'docker');
    const env = only(task.env);
    // The same variables as the Kubernetes workload (POD_IP is Kubernetes' way to build the URL).
    const k8sEnv = [...envOf(byKind(objects, k8sKind).spec.template.spec.containers[0]).keys()].filter((n) => n !== 'POD_IP').sort();
    assert.deepEqual(nomadEnvNames(task), k8sEnv, `${file}: the same environment as the ${k8sKind}`);
    // Secrets only through templates reading Nomad Variables.
    for (const name of secretNames) assert.equal(env[name], undefined, `${file}: ${name} is not literal`);
    for (const template of task.template) assert.match(template.data, /nomadVar "nomad\/jobs/);
    // Health: /healthz restarts the task, /readyz only reports; on the port the task listens on.
    const service = only(group.service);
    const checks = new Map<string, Json>(service.check.map((c: Json) => [c.path, c]));
    assert.deepEqual([...checks.keys()].sort(), ['/healthz', '/readyz']);
    assert.ok(checks.get('/healthz').check_restart, 'liveness restarts');
    assert.equal(checks.get('/readyz').check_restart, undefined, 'readiness does not');
    assert.ok(checks.get('/healthz').type === 'http' && checks.get('/readyz').type === 'http');
    const portBlock = only(only(group.network).port, service.port);
    assert.equal(portBlock.static ?? portBlock.to, port, `${file}: the service's port is ${port}`);
    assert.equal(Number(env.PORTHOLE_PORT), port);
    assert.equal(env.PORTHOLE_HOST, '0.0.0.0');
    const config = only(task.config);
    assert.deepEqual(config.args, [k8sKind === 'DaemonSet' ? 'node' : 'server']);
    if (type === 'system') {
      assert.equal(config.privileged, true, 'the node is privileged, as on Kubernetes');
      assert.equal(config.network_mode, undefined);
      assert.equal(config.pid_mode, undefined, 'not the host’s pids');
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Nomad's interpolation, not JavaScript's
      assert.equal(env.PORTHOLE_NODE_ID, '${node.unique.name}', 'the client’s name, as the DaemonSet uses the host’s');
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Nomad's interpolation, not JavaScript's
      assert.equal(env.PORTHOLE_NODE_URL, 'http://${NOMAD_ADDR_relay}', 'the client’s address and the relay port');
      assert.equal(task.kill_signal, 'SIGTERM');
      assert.ok(durationMs(task.kill_timeout) >= Number(env.PORTHOLE_DRAIN_TIMEOUT_MS) + 30_000, 'Nomad waits for the drain');
    } else {
      assert.equal(config.privileged, undefined);
      assert.deepEqual(config.cap_drop, ['all']);
      assert.equal(config.readonly_rootfs, true);
      assert.equal(group.count, 2);
    }
  }
});
