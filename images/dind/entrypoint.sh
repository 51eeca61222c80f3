#!/bin/sh
# PID 1 of a Docker-in-Docker Swarm node (images/dind). Without --privileged, /sys and the cgroup v1
# hierarchies are mounted read-only in the container: remount them read-write (the capabilities
# and the device cgroup rule given by ops/cluster/local.py allow it), then become dockerd.
# Extra arguments are passed to dockerd (ops/cluster/local.py adds a second unix socket for the host, and
# --insecure-registry IP:5000 for the cluster's registry).
set -eu

mount -o remount,rw /sys 2>/dev/null || echo "dind: could not remount /sys rw" >&2
if [ -d /sys/fs/cgroup ]; then
    mount -o remount,rw /sys/fs/cgroup 2>/dev/null || true
    # cgroup v1: each hierarchy is its own mount; cgroup v2: the one mount above
    awk '$2 ~ "^/sys/fs/cgroup/" && $3 == "cgroup" { print $2 }' /proc/self/mounts | while read -r dir; do
        mount -o remount,bind,rw "$dir" 2>/dev/null || echo "dind: could not remount $dir rw" >&2
    done
fi

# a stale pid file from a previous start of this container (docker start after docker stop)
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid

exec dockerd --storage-driver=overlay2 "$@"
