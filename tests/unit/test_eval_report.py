"""The report beside the reference predictors and published figures: Markdown, HTML, chart."""

from pathlib import Path

from dagllm.evaluation import protocol as P
from dagllm.evaluation import report
from dagllm.evaluation.harness import comparability


def _results() -> dict:
    sts = {"acc": 0.4239, "f1": 0.5954}
    return {
        "klue_sts": {
            "status": "scored", "split": "validation", "size": 519, "items": 519, "metrics": ["acc", "f1"],
            "model": sts, "flags": ["model predictions (argmax) are all one choice: equal to the constant 예 predictor"],
            "reference": {"majority": {"acc": 0.5761, "f1": 0.0}, "constant_0": {"acc": 0.5761, "f1": 0.0},
                          "constant_1": sts, "random": {"acc": 0.5, "f1": 0.45}},
            "predictor_names": {"majority": "majority (아니오)", "constant_0": "constant 아니오",
                                "constant_1": "constant 예", "random": "random (seed 1)"},
        },
        "klue_ynat": {"status": P.NO_DATA, "split": "validation", "size": 9107, "items": 0,
                      "reason": "no klue_ynat/validation rows in the canonical table"},
    }


def test_markdown_places_model_beside_references_and_published():
    md = report.markdown(_results(), P.published(), {"lm-eval": "0.4.13"})
    summary = next(line for line in md.splitlines() if line.startswith("| klue_sts | f1 |"))
    assert summary == ("| klue_sts | f1 | 519 | 59.54 | 0.00 | 45.00 | 59.54 (constant 예) | 59.54 | 60.34 | 33.86 | "
                       "59.54 | 69.71 | 56.52 |")
    assert "| klue_ynat | – | 0 | no data in this mirror |" in md
    assert "| constant 예 | 42.39 | 59.54 |" in md and "| published: kit-1.3b | 42.20 | 56.52 |" in md
    assert "equal to the constant 예 predictor" in md
    # published models whose figures are exactly chance are called out
    assert "published polyglot-ko-1.3b on klue_sts equals the constant 예 predictor" in md
    assert "published kullm-polyglot-5.8b-v2 on klue_sts equals the constant 예 predictor" in md
    assert "kit-5.8b on klue_sts equals" not in md


def _comparable(r: dict, protocol: str = "kit19", shots: int = 0, limit: int | None = None) -> dict:
    for task, res in r.items():
        res["comparable"] = comparability(P.protocol()[task], res, protocol, shots, limit)
    return r


def test_partial_split_is_marked_not_comparable():
    r = _results()
    r["klue_sts"].update(items=10, split_items=519)
    md = report.markdown(_comparable(r, limit=10), P.published(), {})
    assert "| klue_sts | no | limit 10: 10 of 519 items scored |" in md
    assert "Not comparable with the published figures: limit 10: 10 of 519 items scored." in md
    assert "Published figures at chance" not in md


def test_comparability_per_task_and_why():
    full = _comparable(_results())
    assert full["klue_sts"]["comparable"] == {"comparable": True, "why": []}
    assert full["klue_ynat"]["comparable"] == {"comparable": False, "why": ["not scored: no data in this mirror"]}
    md = report.markdown(full, P.published(), {})
    assert md.count("| klue_sts | yes |") == 1 and "| klue_ynat | no | not scored: no data in this mirror |" in md
    other = _comparable(_results(), protocol="dagllm", shots=5)["klue_sts"]["comparable"]
    assert not other["comparable"] and len(other["why"]) == 2
    assert other["why"][0].startswith("protocol dagllm") and other["why"][1] == "5-shot; the published numbers are zero-shot"
    small = _results()
    small["klue_sts"].update(items=400, split_items=400)  # a smaller mirror, no limit
    assert _comparable(small)["klue_sts"]["comparable"]["why"] == ["400 items scored; the published split has 519"]
    # a limit at or above the split's size scores the whole split
    assert _comparable(_results(), limit=600)["klue_sts"]["comparable"]["comparable"]


def test_chart_and_html_embed(tmp_path: Path):
    png = report.chart(_results(), P.published(), tmp_path / "chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.html_page(_results(), P.published(), {"seed": 1}, png)
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64,iVBORw0KGgo" in page
    assert "<td>no data in this mirror</td>" in page


def test_published_equals_constant_only_within_rounding():
    near = {"acc": 0.5021, "macro_f1": 0.3343}  # kullm's published BoolQ is 50.28 / 33.71: close, not equal
    exact = {"acc": 0.5028, "macro_f1": 0.33714}
    base = {"status": "scored", "split": "test", "size": 1404, "items": 1404, "metrics": ["acc", "macro_f1"],
            "predictor_names": {"constant_0": "constant 아니오", "constant_1": "constant 예"}}
    near_found = report.published_equals_constant(
        {"kobest_boolq": {**base, "reference": {"constant_0": near, "constant_1": near}}}, P.published())
    assert near_found == []
    found = report.published_equals_constant(
        {"kobest_boolq": {**base, "reference": {"constant_0": near, "constant_1": exact}}}, P.published())
    assert found == ["published kullm-polyglot-5.8b-v2 on kobest_boolq equals the constant 예 predictor"]
