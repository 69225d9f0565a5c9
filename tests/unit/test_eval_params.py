"""evaluate.limit / device / batch_size / protocol: the preset decides the limit under auto."""

import pytest
from pydantic import ValidationError

from dagllm.params import EvaluateParams, load_params

from ..conftest import REPO


def test_limit_auto_lets_the_preset_decide():
    p = EvaluateParams(tasks=["kobest_copa"])
    assert p.limit == "auto" and p.protocol == "kit19"
    assert p.resolved_limit("tiny") == 200  # the demo keeps a limit
    for preset in ("polyglot-ko-1.3b", "polyglot-ko-5.8b", None):
        assert p.resolved_limit(preset) is None  # real models: every item, as the published numbers
    assert EvaluateParams(tasks=["kobest_copa"], demo_limit=7).resolved_limit("tiny") == 7
    assert EvaluateParams(tasks=["kobest_copa"], limit=5).resolved_limit("polyglot-ko-1.3b") == 5
    assert EvaluateParams(tasks=["kobest_copa"], limit=None).resolved_limit("tiny") is None


def test_device_auto_and_batch_size_auto():
    import torch

    p = EvaluateParams(tasks=["kobest_copa"], batch_size="auto")
    assert p.resolved_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert EvaluateParams(tasks=["kobest_copa"], device="cuda:1").resolved_device() == "cuda:1"


def test_device_auto_picks_cuda_when_torch_sees_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert EvaluateParams(tasks=["kobest_copa"]).resolved_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert EvaluateParams(tasks=["kobest_copa"]).resolved_device() == "cpu"
    assert EvaluateParams(tasks=["kobest_copa"], device="cpu").resolved_device() == "cpu"


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": "all"}, {"batch_size": 0}, {"batch_size": "max"},
                                 {"protocol": "kit20"}])
def test_bad_values_name_the_key(bad: dict):
    with pytest.raises(ValidationError, match=next(iter(bad))):
        EvaluateParams(tasks=["kobest_copa"], **bad)


def test_params_yaml_defaults():
    e = load_params(REPO / "params.yaml").evaluate
    assert (e.protocol, e.limit, e.device, e.num_fewshot) == ("kit19", "auto", "auto", 0)
