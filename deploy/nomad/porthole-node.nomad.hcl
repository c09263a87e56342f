# `porthole node` on Nomad: a system job, one allocation per client that carries
# meta.porthole_sandbox_host = "true". Same image, same environment and same privileges as the
# Kubernetes DaemonSet (deploy/kubernetes/node.yaml says why each one is needed); docs/deploy.md.
#
# The clients need, in their agent configuration:
#   plugin "docker" { config { allow_privileged = true } }   # the node container is privileged
#   client { max_kill_timeout = "11m" }                      # default 30s would cut the drain short
#   client { meta { porthole_sandbox_host = "true" } }       # on the hosts set aside for sandboxes
#
# Secrets come from Nomad Variables (never from this file):
#   nomad var put -namespace porthole nomad/jobs database_url=… cluster_key=… master_key=…
job "porthole-node" {
  namespace = "porthole"
  type      = "system"

  constraint {
    attribute = "${meta.porthole_sandbox_host}"
    value     = "true"
  }

  # One host at a time; each old allocation drains before its replacement starts.
  update {
    max_parallel = 1
    stagger      = "30s"
  }

  group "node" {
    network {
      # A static port: one node per client, and servers reach it at the client's address.
      port "relay" {
        static = 8481
      }
    }

    # A restart of the task ends every sandbox on the host: a few tries, slowly.
    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "porthole-node"
      provider = "nomad"
      port     = "relay"

      # Liveness: the process answers; restarted only after a minute of silence.
      check {
        name     = "healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "5s"

        check_restart {
          limit = 6
          grace = "60s"
        }
      }

      # Readiness: registered in PostgreSQL, heartbeat fresh, not fenced.
      check {
        name     = "readyz"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "3s"
      }
    }

    task "node" {
      driver = "docker"

      # On SIGTERM the node drains (PORTHOLE_DRAIN_TIMEOUT_MS, 600 s), then exits 0: Nomad must
      # wait that long and a minute more before SIGKILL (and the client's max_kill_timeout too).
      kill_signal  = "SIGTERM"
      kill_timeout = "11m"

      config {
        image = "registry.example.com/porthole:0.1.0"
        args  = ["node"]
        ports = ["relay"]
        # What the sandbox driver needs and nothing narrower grants: deploy/kubernetes/node.yaml.
        # Not the host's network, pids or ipc (Docker's defaults keep the container's own).
        privileged = true
      }

      env {
        PORTHOLE_HOST             = "0.0.0.0"
        PORTHOLE_PORT             = "8481"
        PORTHOLE_NODE_ID          = "${node.unique.name}"
        PORTHOLE_NODE_URL         = "http://${NOMAD_ADDR_relay}"
        # The task's own directory: kept across a restart of the task (its leftovers are
        # removed by the next node), gone with the allocation, like the DaemonSet's emptyDir.
        PORTHOLE_DATA_DIR         = "/local/porthole"
        PORTHOLE_DRIVER           = "gvisor"
        PORTHOLE_NODE_CAPACITY    = "8"
        PORTHOLE_DRAIN_TIMEOUT_MS = "600000"
        PORTHOLE_SANDBOX_UIDS     = "61000-61999"
        PORTHOLE_DEMO_PROVIDER    = "false"
        PORTHOLE_LOG_LEVEL        = "info"
      }

      # DATABASE_URL, PORTHOLE_CLUSTER_KEY and PORTHOLE_MASTER_KEY from the namespace's Variables,
      # into the task's secrets directory and its environment.
      template {
        destination = "${NOMAD_SECRETS_DIR}/porthole.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs" }}
          DATABASE_URL={{ .database_url }}
          PORTHOLE_CLUSTER_KEY={{ .cluster_key }}
          PORTHOLE_MASTER_KEY={{ .master_key }}
          {{ end }}
        EOT
      }

      # MB; the sandboxes live in this task's cgroup: PORTHOLE_NODE_CAPACITY × 1 GiB each
      # (PORTHOLE_SANDBOX_MEMORY_MIB) and the node reserved, room for the warm pool above it.
      resources {
        cpu        = 2000
        memory     = 9216
        memory_max = 12288
      }
    }
  }
}
