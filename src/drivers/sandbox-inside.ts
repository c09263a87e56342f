// What a sandbox sees inside, whichever driver runs it: where porthole's files are, which part of
// the host's /etc, and who the person is (passwd, group). The local driver binds them with bwrap
// (local/bwrap-command.ts), the gvisor driver with an OCI bundle (gvisor/oci-spec.ts).

/** Where things are inside the sandbox. */
export const inside = {
  home: '/home/porthole',
  run: '/run/porthole',
  agent: '/opt/porthole/agent.mjs',
  agentConfig: '/run/porthole/agent.json',
  vncSocket: '/run/porthole/vnc.sock',
  agentSocket: '/run/porthole/agent.sock',
  /** Where the server listens for this sandbox (egress proxy, agent channel): a read-only bind of a directory only porthole writes. */
  host: '/run/porthole-host',
  proxySocket: '/run/porthole-host/proxy.sock',
  serverSocket: '/run/porthole-host/server.sock',
  /** The pinned provider CLIs (clis/ in the project, installed by scripts/setup.sh). */
  clis: '/opt/porthole/clis',
  /** The demo provider's CLI (bundled from src/demo/cli). */
  demoCli: '/opt/porthole/demo-cli.mjs',
} as const;

/** The uid/gid the local driver's sandbox processes have inside their user namespace. */
export const insideUid = 1000;

/**
 * The part of the host's /etc that X, fontconfig, openbox, xterm and Chromium read. Not the rest:
 * no passwd/shadow, no ssh, no package manager or service configuration. Missing entries are skipped.
 */
export const etcEntries = [
  'alternatives', // /usr/bin/x-terminal-emulator & co. point through here
  'ca-certificates',
  'ca-certificates.conf',
  'chromium',
  'chromium.d', // sourced by Debian's /usr/bin/chromium wrapper
  'dconf',
  'fonts',
  'gai.conf',
  'glvnd',
  'gtk-3.0',
  'host.conf',
  'hosts',
  'ld.so.cache',
  'ld.so.conf',
  'ld.so.conf.d',
  'locale.alias',
  'localtime',
  'mime.types',
  'nsswitch.conf',
  'os-release',
  'protocols',
  'resolv.conf',
  'services',
  'shells', // xterm starts the passwd shell only when it is listed here
  'ssl',
  'terminfo',
  'timezone',
  'X11',
  'xdg', // openbox's rc.xml and menu
];

/** /etc/passwd of a sandbox whose person is `uid` (the local driver's 1000 in its user namespace; the gvisor driver's host uid). */
export function passwdFor(uid: number): string {
  return [
    `porthole:x:${uid}:${uid}:porthole:/home/porthole:/bin/bash`,
    // Host uids not mapped into the user namespace show as 65534.
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
    '',
  ].join('\n');
}

export function groupFor(uid: number): string {
  return [`porthole:x:${uid}:`, 'nogroup:x:65534:', ''].join('\n');
}

export const sandboxPasswd = passwdFor(insideUid);
export const sandboxGroup = groupFor(insideUid);
