"""Carry this machine's pip configuration into an image build (`podman build -v`).

pip inside the build must trust the same CA bundle and see the same local wheel folders and
indexes as pip here (the PyTorch index is not reachable; the CPU torch wheel lies in a local
folder). This writes the effective configuration (files and PIP_* environment, as
`pip config list` shows it) into one pip.conf and prints the `-v SRC:DST:ro` options that mount
it and every local path it names. Usage: python pipconf.py OUT_DIR
"""

import re
import subprocess
import sys
from pathlib import Path


def main(out_dir: str) -> None:
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], check=True, capture_output=True,
                             text=True).stdout
    settings: dict[str, str] = {}
    for line in listing.splitlines():
        m = re.fullmatch(r"(?:[\w-]+|:env:)\.([\w-]+)='(.*)'", line.strip())
        if m:  # later lines (the environment) override earlier ones, as in pip
            settings[m[1]] = m[2]
    mounts: dict[str, str] = {}
    if "cert" in settings:  # beside the image's own bundle, which apt may still rewrite during the build
        mounts[settings["cert"]] = settings["cert"] = "/etc/pip-build-ca.crt"
    conf = Path(out_dir) / "pip.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(settings.items())), encoding="utf-8")
    mounts[str(conf.resolve())] = "/etc/pip.conf"
    for key, value in settings.items():
        if key == "cert":
            continue
        for word in value.split():
            path = word.removeprefix("file://")
            if word.startswith("file://"):  # a local index links its files by relative paths (../../files)
                path = str(Path(path).parent)
            if path.startswith("/") and Path(path).exists():
                mounts[path] = path
    print(" ".join(f"-v {src}:{dst}:ro" for src, dst in mounts.items()))


if __name__ == "__main__":
    main(sys.argv[1])
