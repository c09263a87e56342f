#!/bin/sh
# Installs what porthole needs when it is missing, then builds. Safe to run again: it only does
# what is missing, and says what it does. `--test` adds what the tests and benches need.
set -eu
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

# The sandbox's packages: the first word of each line of scripts/sandbox-packages.txt, the list
# `porthole doctor` checks too (comments and blank lines left out).
packages=$(awk '!/^[[:space:]]*(#|$)/ { print $1 }' scripts/sandbox-packages.txt | tr '\n' ' ')
# Tests: a real PostgreSQL server, nginx as the reverse proxy in front (test/faults/nginx.test.ts
# runs its own with its own config), iproute2 for the egress test's network namespace
# (test/server/egress-proxy.test.ts) and the test cluster's namespaces and bridge, haproxy in front
# of the test cluster's servers (test/support/cluster.ts: it runs its own, with its own config; the
# package's service listens nowhere); benches: websockify as the baseline relay.
[ "${1:-}" = "--test" ] && packages="$packages postgresql nginx iproute2 haproxy websockify"
# `npm run cluster` (scripts/cluster.mjs): the same cluster the tests make, for a person to try.
[ "${1:-}" = "--cluster" ] && packages="$packages postgresql iproute2 haproxy"
# gVisor's runsc: for the gvisor driver (PORTHOLE_DRIVER=gvisor), and for the tests, which run
# both drivers. The local driver does not need it.
if [ "${1:-}" = "--test" ] || [ "${PORTHOLE_DRIVER:-}" = "gvisor" ]; then packages="$packages runsc"; fi
# kubectl renders deploy/kubernetes offline (`kubectl kustomize`) for test/deploy/manifests.test.ts:
# Debian's kubernetes-client, unless a kubectl is already there (another package's would conflict).
if [ "${1:-}" = "--test" ] && ! command -v kubectl >/dev/null 2>&1; then packages="$packages kubernetes-client"; fi

missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages:$missing"
    say "install them as root: apt-get update && apt-get install -y$missing"
    exit 1
  fi
  say "installing Debian packages:$missing (a few minutes on a fresh machine)"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
  case " $missing " in
    *" nginx "*)
      # Debian's package starts a system nginx on port 80 (where services may start): the tests run
      # their own nginx, with their own config, on a free loopback port. Stop and disable this one.
      say "stopping and disabling the nginx service the package started"
      if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now nginx >&2 || true
      else
        invoke-rc.d nginx stop >&2 2>/dev/null || true
        update-rc.d nginx disable >&2 2>/dev/null || true
        systemctl disable nginx >&2 2>/dev/null || true
      fi
      ;;
  esac
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund >&2
fi

# The coding CLIs the providers sign in (Claude Code, Codex, Gemini CLI), at the exact versions in
# clis/package-lock.json: ≈ 870 MB on disk, ≈ 10 s from the registry. The local driver mounts clis/
# read-only at /opt/porthole/clis in each sandbox. Claude Code's postinstall (allowed in
# clis/package.json) puts its native binary in place; Gemini's optional keytar and node-pty builds
# are denied: a login needs neither.
if [ ! -f clis/node_modules/.package-lock.json ] || [ clis/package-lock.json -nt clis/node_modules/.package-lock.json ]; then
  say "installing the pinned provider CLIs into clis/node_modules (npm ci --prefix clis, ≈ 870 MB)"
  npm ci --prefix clis --no-audit --no-fund >&2
  # The sandbox runs them as an unprivileged uid: readable and runnable by all, whatever the umask.
  chmod -R a+rX clis/node_modules
fi

# The example app (examples/next: Next.js, its own lock, not a workspace of the root), which
# test/e2e/app-afternoon.test.ts builds and starts: for the tests only, never for `npm start`.
if [ "${1:-}" = "--test" ]; then
  if [ ! -f examples/next/node_modules/.package-lock.json ] || [ examples/next/package-lock.json -nt examples/next/node_modules/.package-lock.json ]; then
    say "installing the example app's dependencies (npm ci --prefix examples/next)"
    NEXT_TELEMETRY_DISABLED=1 npm ci --prefix examples/next --no-audit --no-fund >&2
  fi
fi

node scripts/build.mjs >&2
