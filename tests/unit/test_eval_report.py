"""The report beside the reference predictors and published figures: Markdown, HTML, chart."""

from pathlib import Path

from dagllm.evaluation import protocol as P
from dagllm.evaluation import report


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


def test_partial_split_is_marked_not_comparable():
    r = _results()
    r["klue_sts"]["items"] = 10
    md = report.markdown(r, P.published(), {})
    assert "Scored 10 of 519 items" in md and "Published figures at chance" not in md


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
