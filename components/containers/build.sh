#!/usr/bin/env bash
# Build the project's CPU image from components/Dockerfile with podman, on the local Debian base.
# Usage: components/containers/build.sh IMAGE BASE   (env: WORK, the scratch folder)
set -euo pipefail
image=${1:?image tag}
base=${2:?base image tag}
work=${WORK:?scratch folder}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
"$here/base.sh" "$base"
# shellcheck disable=SC2046  # the mount options are words on purpose
podman build --network=host --build-arg "BASE=$base" --build-arg TORCH_INDEX=https://pypi.org/simple \
  $(python3 "$here/pipconf.py" "$work/pip") -f "$repo/components/Dockerfile" -t "$image" "$repo"
