#!/usr/bin/env bash
# `make test-containers`: build the project's CPU image with podman and run tests/containers in it
# (the run-time files of the image, and the whole DAG under kfp.local's DockerRunner through
# podman's Docker API, with a real MLflow server on loopback). docs/deploy.md, "Containers here".
#
# Needs the Debian packages: podman runc uidmap slirp4netns fuse-overlayfs debootstrap (root).
# Env: WORK (scratch, default .containers), IMAGE (default localhost/dagllm:test),
#      CLEAN=1 removes the images afterwards (CI: a fresh machine gains nothing from keeping them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install -y --no-install-recommends podman runc \
uidmap slirp4netns fuse-overlayfs debootstrap" >&2; exit 1; }
done
export WORK=${WORK:-$repo/.containers}
image=${IMAGE:-localhost/dagllm:test}
base=${BASE_IMAGE:-localhost/dagllm-base:bookworm}
mkdir -p "$WORK/tmp"
export CONTAINERS_CONF=$here/containers.conf

sock=$WORK/podman.sock
rm -f "$sock"
# podman itself is the background job, so $! is the PID to stop (no wrapper shell in between).
podman --runtime runc system service --time=0 "unix://$sock" &
service=$!
cleanup() {
  kill "$service" 2>/dev/null || true
  wait "$service" 2>/dev/null || true
  if [ "${CLEAN:-0}" = 1 ]; then podman rmi -f "$image" "$base" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

start=$SECONDS
"$here/build.sh" "$image" "$base"
echo "image $image ready in $((SECONDS - start)) s"
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
DOCKER_HOST="unix://$sock" DAGLLM_TEST_IMAGE="$image" TMPDIR="$WORK/tmp" \
  "${PYTHON:-.venv/bin/python}" -m pytest -q tests/containers -p no:cacheprovider "$@"
echo "container tests done in $((SECONDS - start)) s"
