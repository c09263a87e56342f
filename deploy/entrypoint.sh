#!/bin/sh
# PID 1 of the porthole image (deploy/Dockerfile): `porthole-entrypoint <role> [args]`.
#
# 1. tini becomes PID 1 and runs porthole under it. gVisor's sandboxes are daemons: `runsc create`
#    exits and leaves the sandbox's processes to PID 1, which must reap them when they end (node,
#    as PID 1, would not: it waits only for children it spawned). tini passes SIGTERM on, so the
#    node's drain (PORTHOLE_DRAIN_TIMEOUT_MS) starts on the engine's stop.
# 2. On a cgroup v2 host where this container may write its own cgroup (the privileged node; the
#    server's cgroup filesystem is read-only and this step is skipped), PID 1 first moves into a
#    child `porthole-server`, before tini or porthole exist. A v2 cgroup holding processes may
#    pass no controller on ("no internal processes"), so with tini left in the container's cgroup
#    porthole could enforce no memory, pids or cpu limit on its sandboxes. From porthole-server,
#    porthole delegates from the container's cgroup, now empty, to its sandboxes' cgroups beside
#    it (src/drivers/cgroups/cgroup-v2.ts reads a `porthole-server` leaf that way).
set -eu
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ -w /sys/fs/cgroup ]; then
  own=$(sed -n 's/^0:://p' /proc/self/cgroup)
  leaf="/sys/fs/cgroup${own%/}/porthole-server"
  case "$own" in
    */porthole-server) ;; # already there (a restart of this process tree)
    *) if ! { mkdir -p "$leaf" && echo $$ >"$leaf/cgroup.procs"; } 2>/dev/null; then
         echo "porthole-entrypoint: could not move into $leaf; porthole doctor will say which limits are enforced" >&2
       fi ;;
  esac
fi
exec /usr/bin/tini -- node --enable-source-maps /opt/porthole/dist/src/cli/main.js "$@"
