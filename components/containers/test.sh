#!/usr/bin/env bash
# `make test-containers`: build the project's CPU image with podman and run tests/containers in it
# (the run-time files of the image, and the whole DAG under kfp.local's DockerRunner through
# podman's Docker API, with a real MLflow server on loopback). docs/deploy.md, "Containers here".
#
# Needs the Debian packages: podman runc uidmap slirp4netns fuse-overlayfs debootstrap (root).
# Env: WORK (scratch, default .containers), IMAGE (default localhost/dagllm:test; with CLEAN=1 one tag per run),
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
# CLEAN=1 (CI) tags the image for this run alone: another run on the same podman store (a second
# checkout's tests) neither sees it re-tagged under it nor loses it to this run's clean-up.
if [ "${CLEAN:-0}" = 1 ]; then image=${IMAGE:-localhost/dagllm:test-$$}; else image=${IMAGE:-localhost/dagllm:test}; fi
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
  # not forced: an image still used by a container (another run's) stays; the tests check that this
  # run left none of its own
  if [ "${CLEAN:-0}" = 1 ]; then podman rmi "$image" >/dev/null 2>&1 || true; podman rmi "$base" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

start=$SECONDS
"$here/build.sh" "$image" "$base"
echo "image $image ready in $((SECONDS - start)) s"
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
DOCKER_HOST="unix://$sock" DAGLLM_TEST_IMAGE="$image" TMPDIR="$WORK/tmp" \
  "${PYTHON:-.venv/bin/python}" -m pytest -q tests/containers -p no:cacheprovider "$@"
echo "container tests done in $((SECONDS - start)) s"
