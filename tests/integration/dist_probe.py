"""A rank of a 2-process test run: the real launcher entry point, observed.

Started by torchrun (``dagllm.training.launch.torchrun_command(..., entry=[this file])``). Before
training it wraps three things to record, per rank, into ``PROBE_DIR/rank-R.json``:
the packed rows each batch held (digests), whether this rank called ``dagllm.registry.tracking.configure``
(creates the MLflow experiment), and a digest of the model weights when training ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def main() -> int:
    import transformers

    from dagllm.registry import tracking
    from dagllm.training import launch, packing

    rank = int(os.environ["RANK"])
    seen: dict = {"rows": [], "configure_calls": 0, "weights": None}
    out = Path(os.environ["PROBE_DIR"]) / f"rank-{rank}.json"

    collate = packing.PackedCollator.__call__

    def observed_collate(self, rows):
        seen["rows"].append([hashlib.sha256(json.dumps(r["input_ids"]).encode()).hexdigest()[:16] for r in rows])
        return collate(self, rows)

    configure = tracking.configure

    def observed_configure(*a, **k):
        seen["configure_calls"] += 1
        return configure(*a, **k)

    save_model = transformers.Trainer.save_model

    def observed_save(self, *a, **k):
        h = hashlib.sha256()
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
        seen["weights"] = h.hexdigest()
        out.write_text(json.dumps(seen), encoding="utf-8")
        return save_model(self, *a, **k)

    packing.PackedCollator.__call__ = observed_collate
    tracking.configure = observed_configure
    transformers.Trainer.save_model = observed_save
    return launch.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
