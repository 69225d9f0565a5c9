"""Planted-leak benchmark of decontamination: catch rate per benchmark and edit kind, false positives.

Every benchmark test item of the mirror (KoBEST test splits, KLUE STS dev) is planted, as an exact
copy and with one light edit (one word replaced, one punctuation mark changed, one space removed or
added), inside a real training row of the mirror, rendered as an instruction record. The same
training rows without a plant are the clean set: each one flagged is a false positive.

    .venv/bin/python bench/decontam_recall.py --mirror ../shared/data [--per-benchmark 400] [--clean 5000]

Prints a Markdown table (docs/benchmarks.md) and writes the figures as JSON with --json FILE.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import pandas as pd

from dagllm.data.catalog import load_catalog
from dagllm.data.overlap import decontaminate_frame
from dagllm.data.readers import READERS, Row
from dagllm.params import DecontaminateParams

# What a leak of each benchmark carries: the fields the benchmark shows the model.
PLANTED = {
    "kobest_boolq": ["passage", "question"],
    "kobest_copa": ["premise", "alternative_1", "alternative_2"],
    "kobest_hellaswag": ["context", "ending_1", "ending_2", "ending_3", "ending_4"],
    "kobest_sentineg": ["text"],
    "kobest_wic": ["context_1", "context_2"],
    "klue_sts": ["sentence1", "sentence2"],
}
# Training rows that host the plants (non-benchmark files of the mirror).
HOSTS = ["kornli", "korsts", "apeach", "unsmile", "hatescore", "sae4k", "question_pair", "petitions", "pawsx_ko",
         "stylekqc_sts", "nsmc"]
# The benchmarks' own train splits (and ParaKQC, a source of KLUE STS) share sentences and near copies
# with the test items: their flagged rows are counted apart, as overlaps the mirror really has.
OWN = ["kobest_copa", "kobest_boolq", "kobest_sentineg", "kobest_hellaswag", "kobest_wic", "parakqc"]
EDITS = ["exact", "word", "punctuation", "whitespace"]
# "word (N+ words)": the word edit on items of at least N words. Of an item of one or two words, one
# replaced word leaves one word or nothing, which is no copy; from three words on two words stay.
LONGS = (3, 4)
PUNCT = re.compile(r"[.,!?·'\"“”‘’()~…]")
FILLER = ["정말", "그리고", "아주", "우리", "다시", "조금", "오늘", "모두"]


def _rows(mirror: Path, source: str, benchmark: bool) -> list[tuple[str, Row]]:
    cat = load_catalog()
    out = []
    for sf in cat.source(source).files:
        path = mirror / sf.path
        if sf.benchmark != benchmark or not path.is_file():
            continue
        out += [(sf.split, r) for r in READERS[sf.reader](path) if isinstance(r, Row)]
    return out


def edit(text: str, kind: str, rng: random.Random) -> str:
    """``text`` with one light edit of ``kind``."""
    words = text.split(" ")
    if kind == "word":
        i = rng.choice([j for j, w in enumerate(words) if len(w) >= 2] or [0])
        words[i] = rng.choice([f for f in FILLER if f != words[i]])
        return " ".join(words)
    if kind == "punctuation":
        marks = [m.start() for m in PUNCT.finditer(text)]
        if marks:  # replace or drop one mark
            i = rng.choice(marks)
            return text[:i] + rng.choice(["", "!", "?", ","]) + text[i + 1:]
        i = rng.randrange(len(words))
        words[i] += ","
        return " ".join(words)
    if kind == "whitespace":
        spaces = [m.start() for m in re.finditer(" ", text)]
        if spaces and rng.random() < 0.5:
            i = rng.choice(spaces)
            return text[:i] + text[i + 1:]
        i = rng.randrange(1, max(len(text), 2))
        return text[:i] + " " + text[i:]
    return text


def _record(rid: str, host: str, plant: str | None, rng: random.Random) -> dict:
    if plant is not None:  # inside the host text, at a word boundary
        cut = [m.start() for m in re.finditer(" ", host)] or [len(host)]
        at = rng.choice(cut)
        host = f"{host[:at]} {plant} {host[at:]}"
    return {"id": rid, "task": "bench_host", "source": "bench", "instruction": "다음 글을 읽고 요약하세요.",
            "input": host, "output": "요약: " + host[:40]}


def _old(rev: str):
    """``decontaminate_frame`` of an earlier revision, loaded from git."""
    import importlib.util
    import subprocess
    import tempfile

    # The matcher's home since the layout of issue 21; a revision before it has it in the stage
    # module, whose imports (dagllm.quality, ...) only resolve against that revision's tree.
    shown = subprocess.run(["git", "show", f"{rev}:src/dagllm/data/overlap.py"], capture_output=True, text=True)
    if shown.returncode != 0:
        shown = subprocess.run(["git", "show", f"{rev}:src/dagllm/stages/decontaminate.py"], check=True,
                               capture_output=True, text=True)
    code = shown.stdout
    path = Path(tempfile.mkdtemp()) / "decontaminate_old.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("decontaminate_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["decontaminate_old"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.decontaminate_frame


def _report(title, fn, frame, canon, items, truth, clean, params) -> None:
    t0 = time.perf_counter()
    _, summary = fn(frame, canon, params)
    caught = {h["id"] for h in summary.contaminated}
    print(f"### {title} ({time.perf_counter() - t0:.1f} s)")
    print("| benchmark | " + " | ".join(EDITS) + " |")
    for s in items:
        print(f"| {s} | " + " | ".join(
            f"{100 * sum(1 for r, (s2, k2) in truth.items() if (s2, k2) == (s, k) and r in caught) / len(items[s]):.1f} %"
            for k in EDITS) + " |")
    print(f"false positives: {sum(1 for r in caught if r.startswith('clean|'))} of {clean}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", type=Path, default=Path("../shared/data"))
    ap.add_argument("--per-benchmark", type=int, default=400, help="items planted per benchmark (0 = all)")
    ap.add_argument("--clean", type=int, default=5000, help="clean host rows checked for false positives")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline-rev", help="also run src/dagllm/stages/decontaminate.py as of this git revision "
                    "on the same records, for the same table")
    ap.add_argument("--baseline-ngram-chars", type=int, default=8, help="ngram_chars for the baseline revision "
                    "(8 before 5-character n-grams became the default; 5 for a revision since)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    canonical, items = [], {}
    for source in PLANTED:
        bench = _rows(args.mirror, source, True)
        for k, (split, r) in enumerate(bench):
            canonical.append({"id": f"{source}-{k}", "source": source, "split": split, "native_id": r.native_id,
                              "fields": json.dumps(r.fields, ensure_ascii=False), "label": r.label,
                              "benchmark": True})
        picked = bench if not args.per_benchmark else rng.sample(bench, min(args.per_benchmark, len(bench)))
        items[source] = [" ".join(r.fields[f] for f in PLANTED[source]) for _, r in picked]
        items[source] = [t for t in items[source] if t.strip()]
    pool = [(s, " ".join(v for v in r.fields.values() if len(v) > 3)) for s in HOSTS
            for _, r in _rows(args.mirror, s, False)]
    rng.shuffle(pool)
    clean, hosts = pool[:args.clean], [h for _, h in pool]
    records, truth = [], {}
    for source, texts in items.items():
        for kind in EDITS:
            for j, text in enumerate(texts):
                rid = f"leak|{source}|{kind}|{j}"
                records.append(_record(rid, rng.choice(hosts), edit(text, kind, rng), rng))
                truth[rid] = (source, kind)
    records += [_record(f"clean|{src}|{j}", h, None, rng) for j, (src, h) in enumerate(clean)]
    own = [(s, " ".join(v for v in r.fields.values() if len(v) > 3)) for s in OWN
           for _, r in _rows(args.mirror, s, False)]
    records += [_record(f"own|{src}|{j}", h, None, rng) for j, (src, h) in enumerate(own)]
    frame, canon = pd.DataFrame(records), pd.DataFrame(canonical)
    if args.baseline_rev:
        _report("baseline " + args.baseline_rev, _old(args.baseline_rev), frame, canon, items, truth, len(clean),
                DecontaminateParams(ngram_chars=args.baseline_ngram_chars))
    t0 = time.perf_counter()
    _, summary = decontaminate_frame(frame, canon, DecontaminateParams())
    seconds = time.perf_counter() - t0
    caught = {h["id"] for h in summary.contaminated}
    rates = {s: {k: sum(1 for rid, (s2, k2) in truth.items() if (s2, k2) == (s, k) and rid in caught) / len(items[s])
                 for k in EDITS} for s in items}
    for s, texts in items.items():
        for n in LONGS:
            longs = [j for j, t in enumerate(texts) if len(t.split()) >= n]
            rates[s][f"word ({n}+ words)"] = (sum(1 for j in longs if f"leak|{s}|word|{j}" in caught) / len(longs)
                                              if longs else float("nan"))
    fp = sorted(r for r in caught if r.startswith("clean|"))
    own_flagged = {s: sum(1 for r in caught if r.startswith(f"own|{s}|")) for s in OWN}
    own_total = {s: sum(1 for src, _ in own if src == s) for s in OWN}
    out = {"items_per_benchmark": {s: len(t) for s, t in items.items()}, "benchmark_items": len(canonical),
           "records": len(frame), "clean": len(clean), "false_positives": len(fp), "seconds": round(seconds, 1),
           "rates": rates, "false_positive_examples": [
               {"record": frame.set_index("id").at[h["id"], "input"][:200], "kind": h["kind"], "overlap": h["overlap"],
                "benchmark": h["benchmark"]["source"], "item": h["benchmark"]["text"]}
               for h in summary.contaminated if h["id"] in fp][:20],
           "own_train_flagged": {s: f"{own_flagged[s]} of {own_total[s]}" for s in OWN},
           "too_short": summary.too_short,
           "wrong_benchmark": sum(1 for h in summary.contaminated if h["id"].startswith("leak|")
                                  and h["benchmark"]["source"] != truth[h["id"]][0])}
    cols = [*EDITS, *(f"word ({n}+ words)" for n in LONGS)]
    print("| benchmark | items | " + " | ".join(cols) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in cols) + " |")
    for s, r in rates.items():
        print(f"| {s} | {len(items[s])} | " + " | ".join(f"{100 * r[k]:.1f} %" for k in cols) + " |")
    print(f"\nfalse positives: {len(fp)} of {len(clean)} clean rows; {len(frame)} records against "
          f"{len(canonical)} benchmark items in {seconds:.1f} s")
    print("benchmarks' own train rows flagged (real overlaps):", out["own_train_flagged"])
    print(f"benchmark texts too short to match: {len(summary.too_short)}:",
          ", ".join(f"{t['source']} {t['text']!r}" for t in summary.too_short))
    for ex in out["false_positive_examples"]:
        print("  flagged clean row:", ex)
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
