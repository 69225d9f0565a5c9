"""The data-quality gate: great-expectations suites at three points, with quarantine and Data Docs.

:mod:`dagllm.stages.validate` runs the first two points; :func:`balanced_gate` is the third, run
by :mod:`dagllm.stages.balance` on the mix.

Points: ``ingested`` (the canonical table), ``rendered`` (instruction records) and ``balanced``
(the train + validation mix). Each point runs one suite in an ephemeral GX context over a pandas
DataFrame that carries a few computed columns (prefixed ``_q_``: proxy token count, Hangul ratio
and its per-task bounds, task|label key, records per task).

Expectations come in two kinds:

- row-level (with ``mostly = 1 - max_bad_fraction``): rows they flag are *quarantined* with the
  reasons into ``<quarantine_dir>/<point>.jsonl`` and the run goes on with the rest;
- table-level (schema, types, unique ids, row and per-task counts, duplicate rate, and at the
  rendered point the sum of particle disagreements, ``_q_particle_errors``, at most
  ``max_particle_errors``, and the lint findings per record, ``_q_lint_errors``: the meaning rules
  of :mod:`dagllm.data.lint`, none allowed): no row to blame.

A point fails when any expectation fails or when the quarantined share exceeds
``max_bad_fraction``; :class:`ValidationFailed` is raised *after* the Data Docs and summary are
written. Counts reconcile: ``rows == kept + quarantined`` at every point.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dagllm.data.canonical import CANONICAL_COLUMNS
from dagllm.data.catalog import Catalog
from dagllm.data.lint import ParticleCount, count_particle_errors
from dagllm.data.records import RECORD_COLUMNS, label_counts, top_label
from dagllm.data.text import hangul_ratios, token_counts
from dagllm.io import write_json, write_parquet
from dagllm.params import RenderParams, ValidateParams
from dagllm.runtime import offline

SITE_NAME = "dagllm_validation"
POINTS = ("ingested", "rendered", "balanced")
SPLITS = ["train", "validation", "test"]


class ValidationFailed(RuntimeError):
    """A gate failed; ``summary.lines()`` says which expectations failed on how many rows."""

    def __init__(self, summary):
        self.summary = summary
        super().__init__("; ".join(summary.failure_lines()))


def _failure(e: dict) -> str:
    """One failed expectation in words: on how many rows, what was missing (a set), or what was observed."""
    head = f"{e['expectation']}({e['column'] or ''}) failed"
    if e["unexpected_count"] is not None:
        return f"{head} on {e['unexpected_count']} of {e['element_count']} rows"
    if e.get("missing"):  # a set expectation: the values it wanted and did not find
        return f"{head}: missing {e['missing']}"
    return f"{head} (observed {e['observed_value']})"


@dataclass
class ValidationSummary:
    """The result of one point of the gate."""

    point: str
    success: bool
    rows: int
    kept: int
    quarantined: int
    max_bad_fraction: float
    expectations: list[dict]
    data_docs: str
    quarantine_file: str
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def bad_fraction(self) -> float:
        return self.quarantined / self.rows if self.rows else 0.0

    def to_dict(self) -> dict:
        return {**self.__dict__, "bad_fraction": round(self.bad_fraction, 6)}

    def failure_lines(self) -> list[str]:
        lines = [f"{self.point}: {_failure(e)}" for e in self.expectations if not e["success"]]
        if self.bad_fraction > self.max_bad_fraction:
            lines.append(f"{self.point}: {self.quarantined} of {self.rows} rows quarantined "
                         f"({self.bad_fraction:.1%} > max_bad_fraction {self.max_bad_fraction:.1%})")
        return lines

    def lines(self) -> list[str]:
        ok = sum(e["success"] for e in self.expectations)
        head = (f"{self.point} gate {'passed' if self.success else 'FAILED'}: {ok}/{len(self.expectations)} "
                f"expectations on {self.rows} rows; kept {self.kept}, quarantined {self.quarantined}")
        return [head, *self.failure_lines(), f"Data Docs: {self.data_docs}"]


@dataclass
class GateSummary:
    """Several points run by one stage (validate runs ``ingested`` and ``rendered``)."""

    points: list[ValidationSummary]

    @property
    def success(self) -> bool:
        return all(p.success for p in self.points)

    def to_dict(self) -> dict:
        return {"success": self.success, "points": {p.point: p.to_dict() for p in self.points}}

    def failure_lines(self) -> list[str]:
        return [line for p in self.points for line in p.failure_lines()]

    def lines(self) -> list[str]:
        docs = sorted({p.data_docs for p in self.points})
        return [*(line for p in self.points for line in p.lines()[:-1]), *(f"Data Docs: {d}" for d in docs)]


def allowed_task_labels(catalog: Catalog, tasks: list[str]) -> dict[str, set[str]]:
    """``task -> allowed labels`` for the tasks whose record ``label`` must be one of ``labels``.

    Tasks that take their label from another field (``label_field``) or verbalise unlisted labels
    (``label_default``) have no closed set over the record's ``label``: they are not checked here.
    """
    out = {}
    for t in tasks:
        task = catalog.task(t)
        if task.labels and task.label_field is None and task.label_default is None:
            out[t] = set(task.labels)
    return out


def _row_level(params: ValidateParams):
    mostly = 1.0 - params.max_bad_fraction
    # meta marks the expectations whose unexpected rows are quarantined
    return lambda cls, **kw: cls(**kw, mostly=mostly, meta={"row_level": True})


def _ingested_suite(gx, params: ValidateParams, label_keys: list[str]) -> tuple[list, list]:
    E = gx.expectations
    row = _row_level(params)
    table = [
        E.ExpectTableColumnsToMatchSet(column_set=[*CANONICAL_COLUMNS, "_q_fields_chars", "_q_source_label"],
                                       exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToBeUnique(column="id"),
        E.ExpectColumnValuesToBeOfType(column="benchmark", type_="bool"),
        E.ExpectColumnValuesToBeOfType(column="line", type_="int64"),
    ]
    rows = [row(E.ExpectColumnValuesToNotBeNull, column=c) for c in ("id", "source", "fields", "license")]
    rows += [
        row(E.ExpectColumnValueLengthsToBeBetween, column="license", min_value=1),
        row(E.ExpectColumnValuesToBeBetween, column="_q_fields_chars", min_value=3, max_value=params.max_fields_chars),
        row(E.ExpectColumnValuesToBeInSet, column="split", value_set=SPLITS),
        row(E.ExpectColumnValuesToBeInSet, column="_q_source_label", value_set=label_keys),
    ]
    return table, rows


def _records_suite(gx, params: ValidateParams, tasks: list[str], label_keys: list[str] | None,
                   max_per_task: int | None, particles: bool = False) -> tuple[list, list]:
    E = gx.expectations
    row = _row_level(params)
    extra = ["_q_tokens", "_q_hangul", "_q_hangul_min", "_q_hangul_max", "_q_task_count"]
    if label_keys is not None:
        extra.append("_q_task_label")
    if particles:
        extra += ["_q_particle_errors", "_q_lint_errors"]
    table = [
        E.ExpectTableColumnsToMatchSet(column_set=[*RECORD_COLUMNS, *extra], exact_match=True),
        E.ExpectTableRowCountToBeBetween(min_value=params.min_records_per_task * len(tasks)),
        E.ExpectColumnValuesToBeUnique(column="id"),
        E.ExpectColumnValuesToBeBetween(column="_q_task_count", min_value=params.min_records_per_task,
                                        max_value=max_per_task),
        E.ExpectCompoundColumnsToBeUnique(column_list=["instruction", "input", "output"],
                                          mostly=max(1.0 - params.max_duplicate_fraction, 0.0)),
    ]
    if particles:  # the rendered point: every selected task rendered records (a task with none is absent
        # from _q_task_count); after balancing a category weight of 0 may leave a task out on purpose
        table.append(E.ExpectColumnDistinctValuesToContainSet(column="task", value_set=tasks))
        # particles that disagree with the value before them, over all records
        table.append(E.ExpectColumnSumToBeBetween(column="_q_particle_errors", min_value=0,
                                                  max_value=params.max_particle_errors))
        # lint rules a record breaks (repeat, giveaway, form, ...): table-level, no record may break one
        table.append(E.ExpectColumnValuesToBeBetween(column="_q_lint_errors", min_value=0, max_value=0))
    rows = [row(E.ExpectColumnValuesToNotBeNull, column=c) for c in ("instruction", "output", "license")]
    rows += [
        row(E.ExpectColumnValueLengthsToBeBetween, column="instruction", min_value=params.min_instruction_chars,
            max_value=params.max_instruction_chars),
        row(E.ExpectColumnValueLengthsToBeBetween, column="input", min_value=0, max_value=params.max_input_chars),
        row(E.ExpectColumnValueLengthsToBeBetween, column="output", min_value=1, max_value=params.max_output_chars),
        row(E.ExpectColumnValueLengthsToBeBetween, column="license", min_value=1),
        row(E.ExpectColumnValuesToBeBetween, column="_q_tokens", min_value=params.min_tokens,
            max_value=params.max_tokens),
        row(E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="_q_hangul", column_B="_q_hangul_min", or_equal=True),
        row(E.ExpectColumnPairValuesAToBeGreaterThanB, column_A="_q_hangul_max", column_B="_q_hangul", or_equal=True),
        row(E.ExpectColumnValuesToBeInSet, column="task", value_set=tasks),
        row(E.ExpectColumnValuesToBeInSet, column="template_kind", value_set=["instruction", "question"]),
    ]
    if label_keys is not None:
        rows.append(row(E.ExpectColumnValuesToBeInSet, column="_q_task_label", value_set=label_keys))
    return table, rows


def prepare_canonical(df: pd.DataFrame, catalog: Catalog, tasks: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Add the computed columns of the ingested point; returns the frame and the allowed keys."""
    allowed: dict[str, set[str]] = {}
    for task_id, labels in allowed_task_labels(catalog, tasks).items():
        for ts in catalog.task(task_id).sources:
            allowed.setdefault(ts.source, set()).update(labels)
    out = df.copy()
    out["_q_fields_chars"] = out["fields"].fillna("").str.len().astype("int64")
    # Only rows a labelled task will render are checked (GX skips nulls in an in-set expectation).
    checked = out["source"].isin(list(allowed)) & ~out["benchmark"].astype(bool)
    out["_q_source_label"] = np.where(checked, out["source"].astype(str) + "|" + out["label"].fillna("<none>").astype(str), None)
    return out, sorted(f"{s}|{lab}" for s, labels in allowed.items() for lab in labels)


def prepare_records(df: pd.DataFrame, params: ValidateParams, labels: pd.Series | None = None,
                    allowed: dict[str, set[str]] | None = None) -> tuple[pd.DataFrame, list[str] | None]:
    """Add the computed columns of the rendered/balanced points.

    Args:
        df: records with ``RECORD_COLUMNS``.
        params: the gate's thresholds (Hangul bounds per task or category).
        labels: canonical label per ``record_id`` (rendered point), or None to skip the label check.
        allowed: ``task -> allowed labels`` for tasks that declare a label set.
    """
    out = df.copy()
    text = (out["instruction"].fillna("") + "\n" + out["input"].fillna("") + "\n" + out["output"].fillna("")).tolist()
    out["_q_tokens"] = token_counts(text)
    out["_q_hangul"] = hangul_ratios(text)
    bounds = {(t, c): params.hangul_for(t, c) for t, c in out[["task", "category"]].drop_duplicates().itertuples(index=False)}
    pair = list(zip(out["task"], out["category"], strict=True))
    out["_q_hangul_min"] = np.array([bounds[k].min for k in pair], dtype=np.float64)
    out["_q_hangul_max"] = np.array([bounds[k].max for k in pair], dtype=np.float64)
    out["_q_task_count"] = out.groupby("task")["id"].transform("size").astype("int64")
    if labels is None:
        return out, None
    allowed = allowed or {}
    lab = out["record_id"].map(labels).fillna("<none>")  # no canonical row: never an allowed label
    checked = out["task"].isin(list(allowed))
    out["_q_task_label"] = np.where(checked, out["task"].astype(str) + "|" + lab.astype(str), None)
    return out, sorted(f"{t}|{x}" for t, labels_ in allowed.items() for x in labels_)


class Gate:
    """One GX ephemeral context with a Data Docs site under ``out_dir/docs``."""

    def __init__(self, out_dir: Path):
        offline()  # no telemetry calls from a pipeline
        import great_expectations as gx

        self.gx = gx
        self.out_dir = Path(out_dir)
        self.docs_dir = self.out_dir / "docs"
        if self.docs_dir.exists():
            shutil.rmtree(self.docs_dir)
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.ctx = gx.get_context(mode="ephemeral")
        # GX's own "Calculating Metrics" bars (one per expectation batch) would flood the stage output
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.ctx.add_data_docs_site(site_name=SITE_NAME, site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(self.docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        self.source = self.ctx.data_sources.add_pandas("pandas")

    def run(self, point: str, df: pd.DataFrame, table: list, rows: list, params: ValidateParams,
            quarantine_dir: Path, pre_quarantined: list[dict] | None = None) -> tuple[ValidationSummary, pd.DataFrame]:
        """Run one point's suite on ``df``; write the quarantine file; return the summary and kept rows."""
        gx = self.gx
        suite = self.ctx.suites.add(gx.ExpectationSuite(name=point))
        for exp in [*table, *rows]:
            suite.add_expectation(exp)
        batch = self.source.add_dataframe_asset(point).add_batch_definition_whole_dataframe("all")
        vd = self.ctx.validation_definitions.add(gx.ValidationDefinition(name=point, data=batch, suite=suite))
        checkpoint = self.ctx.checkpoints.add(gx.Checkpoint(
            name=point, validation_definitions=[vd], result_format={"result_format": "COMPLETE"},
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE_NAME])],
        ))
        frame = df.reset_index(drop=True)
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        entries, bad = [], {}
        for run in result.run_results.values():
            for r in run.results:
                cfg = r.expectation_config
                column = cfg.kwargs.get("column") or cfg.kwargs.get("column_A")
                entries.append({
                    "expectation": cfg.type, "column": column, "success": bool(r.success),
                    "row_level": bool((cfg.meta or {}).get("row_level")),
                    "unexpected_count": r.result.get("unexpected_count"),
                    "element_count": r.result.get("element_count"),
                    "observed_value": _plain(r.result.get("observed_value")),
                    "missing": r.result.get("partial_missing_list"),
                    "kwargs": {k: _plain(v) for k, v in cfg.kwargs.items() if k != "batch_id"},
                })
                if entries[-1]["row_level"]:
                    for i in r.result.get("unexpected_index_list") or []:
                        bad.setdefault(int(i), []).append(f"{cfg.type}({column})")
        return self._finish(point, frame, entries, bad, params, quarantine_dir, pre_quarantined or [])

    def _finish(self, point, frame, entries, bad, params, quarantine_dir, pre):
        original = [c for c in frame.columns if not c.startswith("_q_")]
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        qfile = quarantine_dir / f"{point}.jsonl"
        reasons: dict[str, int] = {}
        with open(qfile, "w", encoding="utf-8") as fh:
            for item in pre:
                reasons[item["reasons"][0]] = reasons.get(item["reasons"][0], 0) + 1
                fh.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
            for i in sorted(bad):
                for r in bad[i]:
                    reasons[r] = reasons.get(r, 0) + 1
                record = {c: _plain(frame.at[i, c]) for c in original}
                fh.write(json.dumps({"point": point, "row": i, "id": record.get("id"), "reasons": bad[i],
                                     "record": record}, ensure_ascii=False, default=str) + "\n")
        kept = frame.drop(index=list(bad))[original].reset_index(drop=True)
        rows = len(frame) + len(pre)
        quarantined = len(bad) + len(pre)
        assert rows == len(kept) + quarantined
        s = ValidationSummary(point, False, rows, len(kept), quarantined, params.max_bad_fraction, entries,
                              str(self.docs_dir / "index.html"), str(qfile), dict(sorted(reasons.items())))
        s.success = all(e["success"] for e in entries) and s.bad_fraction <= params.max_bad_fraction
        return s, kept


def _plain(v):
    """JSON-friendly form of a pandas/numpy scalar."""
    if isinstance(v, np.generic):
        return v.item()
    if v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    return v


def particle_errors(records: pd.DataFrame, canonical: pd.DataFrame, catalog: Catalog,
                    seed: int | None) -> ParticleCount:
    """Per record, the particles that disagree with the value before them and the lint rules it breaks
    (:mod:`dagllm.data.lint`): each record is rendered again from its canonical row, values marked,
    and read. Records the re-render does not reproduce are counted as ``unverified``."""
    seed = RenderParams.model_fields["seed"].default if seed is None else seed
    texts = zip(records["instruction"].tolist(), records["input"].tolist(), records["output"].tolist(), strict=True)
    recs = zip(records["task"].tolist(), records["template_id"].tolist(), records["record_id"].tolist(), texts,
               strict=True)
    return count_particle_errors(recs, canonical, catalog, seed)


def validate_points(canonical: pd.DataFrame, rendered: pd.DataFrame, params: ValidateParams, tasks: list[str],
                    catalog: Catalog, out_dir: Path, quarantine_dir: Path,
                    render_seed: int | None = None,
                    canonical_out: Path | None = None) -> tuple[GateSummary, pd.DataFrame]:
    """The ``ingested`` and ``rendered`` points; returns the summary and the rendered rows kept.

    ``render_seed`` (``render.seed``; its default when None) lets the gate render each record again
    to count particle disagreements (``validate.max_particle_errors``) and lint findings (none
    allowed; ``particles.json`` key ``lint``: counts per rule, task and template).

    Rendered records of a quarantined canonical row are quarantined too (reason
    ``canonical_row_quarantined``), so a bad source row never reaches training. When the gate
    passes, the canonical rows it kept (benchmark rows included) are written to ``canonical_out``:
    decontamination and evaluation read that table, so a quarantined benchmark row is never used.
    """
    gate = Gate(out_dir)
    cdf, keys = prepare_canonical(canonical, catalog, tasks)
    t, r = _ingested_suite(gate.gx, params, keys)
    ingested, kept_canonical = gate.run("ingested", cdf, t, r, params, quarantine_dir)
    dropped = set(canonical["id"]) - set(kept_canonical["id"])
    orphan = rendered["record_id"].isin(dropped)
    pre = [{"point": "rendered", "row": int(i), "id": rendered.at[i, "id"], "reasons": ["canonical_row_quarantined"],
            "record": {c: _plain(rendered.at[i, c]) for c in rendered.columns}} for i in np.flatnonzero(orphan)]
    labels = canonical.drop_duplicates("id").set_index("id")["label"]
    rdf, rkeys = prepare_records(rendered[~orphan.to_numpy()], params, labels, allowed_task_labels(catalog, tasks))
    particles = particle_errors(rdf, canonical, catalog, render_seed)
    rdf["_q_particle_errors"] = np.asarray(particles.errors, dtype=np.int64)
    rdf["_q_lint_errors"] = np.asarray(particles.lint, dtype=np.int64)
    write_json(Path(out_dir) / "particles.json", {
        "records": len(rdf), "errors": int(sum(particles.errors)), "per_task": particles.per_task,
        "rendered_again": particles.rendered, "by_markers": particles.by_markers, "unverified": particles.unverified,
        "lint": particles.lint_report()})
    t, r = _records_suite(gate.gx, params, tasks, rkeys, params.max_records_per_task, particles=True)
    rendered_summary, kept = gate.run("rendered", rdf, t, r, params, quarantine_dir, pre)
    summary = GateSummary([ingested, rendered_summary])
    write_json(Path(out_dir) / "summary.json", summary.to_dict())
    if canonical_out is not None and summary.success:
        write_parquet(kept_canonical[list(canonical.columns)].reset_index(drop=True), canonical_out)
    return summary, kept


def validate_balanced(records: pd.DataFrame, params: ValidateParams, tasks: list[str], max_per_task: int | None,
                      out_dir: Path, quarantine_dir: Path) -> tuple[GateSummary, pd.DataFrame]:
    """The ``balanced`` point over the train + validation mix (labels were checked when rendered)."""
    gate = Gate(out_dir)
    df, _ = prepare_records(records, params)
    t, r = _records_suite(gate.gx, params, tasks, None, max_per_task)
    s, kept = gate.run("balanced", df, [*t, *label_mix_expectations(gate.gx, records)], r, params, quarantine_dir)
    summary = GateSummary([s])
    write_json(Path(out_dir) / "summary.json", summary.to_dict())
    return summary, kept


def label_mix_expectations(gx, records: pd.DataFrame) -> list:
    """Balanced point: per task with labels, its labels in the mix, with their counts and the top
    label's share in the notes, so Data Docs shows the label distribution of every task.

    The value set is what the mix holds: the expectations report, they never fail the gate (the
    skew warning is the balance stage's, ``balance.labels.skew_warn``).
    """
    E = gx.expectations
    out = []
    for task, counts in label_counts(records).items():
        label, share = top_label(counts)
        total = sum(counts.values())
        notes = [f"Labels of {task} in the mix ({total} distinct records); most common {label} at {share:.1%}.",
                 *(f"{lab}: {n} records ({n / total:.1%})" for lab, n in counts.items())]
        out.append(E.ExpectColumnDistinctValuesToBeInSet(
            column="label", value_set=sorted(counts), row_condition=f"task=={task!r}", condition_parser="pandas",
            notes=notes, meta={"task": task, "label_counts": counts, "top_label": label, "top_share": round(share, 4)}))
    return out


def balanced_gate(params: ValidateParams, tasks: list[str], max_per_task: int | None, out_dir: Path,
                  quarantine_dir: Path):
    """A ``gate(train, val)`` for :func:`dagllm.stages.balance.run_balance`.

    The gate checks the distinct records of the mix (repeats from upsampling are one record) and
    removes quarantined ones from both splits.

    Raises:
        ValidationFailed: the balanced point failed (after its Data Docs and summary are written).
    """
    def gate(train: pd.DataFrame, val: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
        distinct = pd.concat([train, val]).drop_duplicates("id")[RECORD_COLUMNS]
        summary, kept = validate_balanced(distinct, params, tasks, max_per_task, out_dir, quarantine_dir)
        if not summary.success:
            raise ValidationFailed(summary)
        ids = set(kept["id"])
        return (train[train["id"].isin(ids)].reset_index(drop=True), val[val["id"].isin(ids)].reset_index(drop=True),
                summary.to_dict())

    return gate
