"""The evaluation report: the model beside the reference predictors and the published KIT-19 figures.

One set of sections (title, header, rows, notes) renders to Markdown (``table.md``) and to an HTML
page with the chart embedded as base64 (for the KFP UI); the chart is a grouped bar chart (PNG).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from dagllm.evaluation.protocol import Published

CHART_PUBLISHED = ("polyglot-ko-1.3b", "kit-1.3b", "kit-5.8b")
# Published percentages have 2 decimals: equal within half a unit of the last digit (0.005 points).
ROUNDING = 0.000051


@dataclass
class Section:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _published(pub: Published, task: str, metric: str, model: str) -> float | None:
    value = pub.results.get(task, {}).get(metric, {}).get(model)
    return None if value is None else value / 100


def summary_section(results: dict, pub: Published) -> Section:
    """One row per task and metric: model, chance references, published models."""
    header = ["task", "metric", "items", "model", "majority", "random", "best constant"] + pub.models
    rows = []
    for task, r in results.items():
        if r["status"] != "scored":
            rows.append([task, "–", "0", r["status"], "", "", ""] + [""] * len(pub.models))
            continue
        for m in r["metrics"]:
            consts = {k: v[m] for k, v in r["reference"].items() if k.startswith("constant_")}
            best = max(consts, key=consts.get)
            rows.append([task, m, str(r["items"]), pct(r["model"][m]), pct(r["reference"]["majority"][m]),
                         pct(r["reference"]["random"][m]), f"{pct(consts[best])} ({r['predictor_names'][best]})"]
                        + [pct(_published(pub, task, m, p)) for p in pub.models])
    notes = [f"Percent. Published: {pub.source}. \"–\": not in the published table."]
    return Section("Summary", header, rows, notes)


def task_section(task: str, r: dict, pub: Published) -> Section:
    """Rows = predictors (model, majority, each constant, random, published), columns = metrics."""
    title = f"{task} ({r['split']}, {r['items']:,} of {r['size']:,} items)" if r["status"] == "scored" else task
    if r["status"] != "scored":
        return Section(title, ["status"], [[r["status"]]], [r.get("reason", "")])
    header = ["predictor"] + r["metrics"]
    rows = [["model"] + [pct(r["model"][m]) for m in r["metrics"]]]
    rows += [[r["predictor_names"][k]] + [pct(v[m]) for m in r["metrics"]] for k, v in r["reference"].items()]
    rows += [[f"published: {p}"] + [pct(_published(pub, task, m, p)) for m in r["metrics"]]
             for p in pub.models if task in pub.results]
    notes = list(r.get("flags", []))
    comp = r.get("comparable")
    if comp is not None and not comp["comparable"]:
        notes.append("Not comparable with the published figures: " + "; ".join(comp["why"]) + ".")
    return Section(title, header, rows, notes)


def comparability_section(results: dict) -> Section:
    """Per task: is its number comparable with the published one (kit19, zero-shot, full split)?"""
    rows = []
    for task, r in results.items():
        comp = r.get("comparable") or {"comparable": False, "why": ["comparability not computed"]}
        rows.append([task, "yes" if comp["comparable"] else "no", "; ".join(comp["why"]) or
                     "protocol kit19, zero-shot, every item of the split, lm-eval log-likelihood scoring"])
    notes = ["Comparable = KIT-19's prompts on the loaders' documents (protocol kit19), zero-shot, the full "
             "split, lm-eval's log-likelihood multiple choice (docs/evaluation.md)."]
    return Section("Comparable with the published table", ["task", "comparable", "why"], rows, notes)


def published_equals_constant(results: dict, pub: Published) -> list[str]:
    """Published models whose figures on a task equal a constant predictor's (full splits only)."""
    found = []
    for task, r in results.items():
        if r["status"] != "scored" or r["items"] != r["size"] or task not in pub.results:
            continue
        for model in pub.models:
            for key, ref in r["reference"].items():
                if key.startswith("constant_") and all(
                        (p := _published(pub, task, m, model)) is not None and abs(p - ref[m]) <= ROUNDING
                        for m in pub.results[task]):
                    found.append(f"published {model} on {task} equals the {r['predictor_names'][key]} predictor")
    return found


def sections(results: dict, pub: Published) -> list[Section]:
    return ([summary_section(results, pub), comparability_section(results)]
            + [task_section(t, r, pub) for t, r in results.items()])


def markdown(results: dict, pub: Published, meta: dict) -> str:
    """The whole report as Markdown."""
    out = [f"# {_title(meta)}", "", _meta_line(meta), ""]
    for s in sections(results, pub):
        out += [f"## {s.title}", "", "| " + " | ".join(s.header) + " |", "|" + " --- |" * len(s.header)]
        out += ["| " + " | ".join(row) + " |" for row in s.rows]
        out += [""] + [f"- {n}" for n in s.notes if n] + ([""] if any(s.notes) else [])
    extra = published_equals_constant(results, pub)
    if extra:
        out += ["## Published figures at chance", ""] + [f"- {x}" for x in extra] + [""]
    return "\n".join(out)


def html_page(results: dict, pub: Published, meta: dict, chart_png: Path) -> str:
    """A self-contained HTML page: the chart (base64 PNG) and the same tables."""
    img = base64.b64encode(Path(chart_png).read_bytes()).decode("ascii")
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>dagllm evaluation</title>",
             "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(_title(meta))}</h1>", f"<p>{html.escape(_meta_line(meta))}</p>",
             f"<img alt='model vs reference predictors vs published' src='data:image/png;base64,{img}'>"]
    for s in sections(results, pub):
        parts.append(f"<h2>{html.escape(s.title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in s.header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.rows]
        parts.append("</table>" + "".join(f"<p>{html.escape(n)}</p>" for n in s.notes if n))
    parts += [f"<p>{html.escape(x)}</p>" for x in published_equals_constant(results, pub)]
    return "\n".join(parts + ["</body></html>"])


def chart(results: dict, pub: Published, out: Path) -> Path:
    """Grouped bars per task and metric: model, majority, random and a few published models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = [(t, m) for t, r in results.items() if r["status"] == "scored" for m in r["metrics"]]
    series = {"model": [results[t]["model"][m] for t, m in keys],
              "majority": [results[t]["reference"]["majority"][m] for t, m in keys],
              "random": [results[t]["reference"]["random"][m] for t, m in keys]}
    for p in CHART_PUBLISHED:
        series[f"published {p}"] = [_published(pub, t, m, p) for t, m in keys]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(keys) + 2), 4.5))
    x = np.arange(len(keys))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else 100 * v for v in values]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
    ax.set_xticks(x, [f"{t}\n{m}" for t, m in keys], fontsize=7)
    ax.set_ylabel("percent")
    ax.set_ylim(0, 100)
    ax.set_title("KIT-19 protocol: model vs reference predictors vs published")
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _title(meta: dict) -> str:
    if meta.get("protocol", "kit19") == "kit19":
        return "Evaluation: KIT-19 protocol"
    return f"Evaluation: protocol {meta['protocol']} (our prompts, not KIT-19's)"


def _meta_line(meta: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in meta.items())
