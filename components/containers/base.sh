#!/usr/bin/env bash
# Make the local base image (no image can be pulled here): a Debian bookworm minbase made by
# debootstrap, imported, plus a venv at /usr/local so that it looks like the python image
# (/usr/local/bin/python and pip; Debian's own python3 refuses pip under PEP 668).
# Usage: components/containers/base.sh TAG   (env: WORK, the scratch folder; MIRROR, the Debian mirror)
set -euo pipefail
tag=${1:?base image tag}
work=${WORK:?scratch folder}
if podman image exists "$tag"; then echo "base $tag: present"; exit 0; fi
mirror=${MIRROR:-$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -1)}
rootfs=$work/rootfs
if [ ! -x "$rootfs/usr/bin/python3" ]; then
  rm -rf "$rootfs"
  echo "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
    > "$work/debootstrap.log"
fi
tar -C "$rootfs" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -c . | podman import - "$tag-debian"
printf 'FROM %s\nRUN python3 -m venv /usr/local && /usr/local/bin/python -m pip --version\nENV PATH=/usr/local/bin:$PATH\nCMD ["python"]\n' \
  "$tag-debian" | podman build --network=host -t "$tag" -f - "$work"
podman rmi "$tag-debian" >/dev/null
