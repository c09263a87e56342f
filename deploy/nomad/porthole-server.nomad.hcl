# `porthole server` on Nomad: a service job, two allocations on two clients, stateless. Same
# image and environment as deploy/kubernetes/server.yaml; docs/deploy.md.
#
# Secrets come from Nomad Variables (never from this file):
#   nomad var put -namespace porthole nomad/jobs database_url=… cluster_key=… master_key=…
#   nomad var put -namespace porthole nomad/jobs/porthole-server api_key=…
# Put a load balancer in front of the "porthole" service (any server takes any request and any
# viewer's WebSocket) and set PORTHOLE_PUBLIC_URL to its address.
job "porthole-server" {
  namespace = "porthole"
  type      = "service"

  # A new server is healthy before the next old one stops; a release that never gets healthy
  # is rolled back.
  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "3m"
    auto_revert      = true
  }

  group "server" {
    count = 2

    # One server per client where there are enough, so that one host's loss leaves one serving.
    spread {
      attribute = "${node.unique.id}"
    }

    network {
      port "http" {
        to = 8480
      }
    }

    service {
      name     = "porthole"
      provider = "nomad"
      port     = "http"

      # Liveness: the process answers (never the store).
      check {
        name     = "healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "5s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }

      # Readiness: the store answers.
      check {
        name     = "readyz"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "3s"
      }
    }

    task "server" {
      driver = "docker"
      # An unprivileged uid; the server starts no sandbox.
      user = "10001:10001"

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image           = "registry.example.com/porthole:0.1.0"
        args            = ["server"]
        ports           = ["http"]
        readonly_rootfs = true
        cap_drop        = ["all"]
        security_opt    = ["no-new-privileges"]

        # Its data directory and /tmp: nothing in them outlives the allocation.
        mount {
          type     = "tmpfs"
          target   = "/var/lib/porthole"
          readonly = false
          tmpfs_options {
            size = 268435456
            mode = 1023 # 01777
          }
        }
        mount {
          type     = "tmpfs"
          target   = "/tmp"
          readonly = false
          tmpfs_options {
            size = 268435456
            mode = 1023 # 01777
          }
        }
      }

      env {
        PORTHOLE_HOST          = "0.0.0.0"
        PORTHOLE_PORT          = "8480"
        PORTHOLE_DATA_DIR      = "/var/lib/porthole/data"
        PORTHOLE_DEMO_PROVIDER = "false"
        PORTHOLE_LOG_LEVEL     = "info"
      }

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
          {{ with nomadVar "nomad/jobs/porthole-server" }}
          PORTHOLE_API_KEY={{ .api_key }}
          {{ end }}
        EOT
      }

      resources {
        cpu        = 500
        memory     = 256
        memory_max = 1024
      }
    }
  }
}
