"""Protocol kit19 builds, for every item of every task, exactly the lm-eval requests of KIT-19.

The expected (context, continuation) pairs are f-strings of the specification (issue 13, DESIGN.md
"Evaluation protocol") over the raw fields, which this test reads itself with the ``csv`` module
(default quoting, as pandas parses) and ``json``; the requests come from lm-eval's own Task
machinery (``ConfigurableTask`` from our YAML, ``build_all_requests``) over the documents that
``dagllm.evaluation.documents`` writes. Real files from ../shared/data when present, else the samples.
"""

import csv
import json
import os
import re
from pathlib import Path

import pytest

from dagllm.data.catalog import load_catalog
from dagllm.evaluation import protocol as P
from dagllm.evaluation.documents import DocumentError, load_documents
from dagllm.evaluation.harness import prepare_task

from ..conftest import REPO, SAMPLES

# DAGLLM_SHARED_DATA points a worktree outside /work at the mirror
MIRROR = Path(os.environ.get("DAGLLM_SHARED_DATA", REPO.parent / "shared" / "data"))
TASKS = ["kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_sentineg", "kobest_wic", "klue_sts", "klue_ynat"]
YES_NO = ["아니오", "예"]
YNAT_ORDER = ["IT과학", "경제", "사회", "생활문화", "세계", "스포츠", "정치"]
YNAT_SHORT = ["과학", "경제", "사회", "생활", "세계", "스포츠", "정치"]


def detok(s: str) -> str:
    """The harness's general_detokenize, written out from its definition (lm_eval/utils.py)."""
    for a, b in ((" n't", "n't"), (" )", ")"), ("( ", "("), ('" ', '"'), (' "', '"')):
        s = s.replace(a, b)
    return re.sub(r" (['.,])", r"\1", s)


def _tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))  # default quoting: "" inside quotes is "
    return [r for r in rows if all(v not in ("", None) for v in r.values())]  # the loader's dropna


def expected(task: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(context, choices, gold) per item, from the spec over the raw fields."""
    if task == "kobest_boolq":
        return [(f"{r['Text']} 질문: {r['Question']} 답변: ", YES_NO, int(r["Answer"].lower() == "true"))
                for r in _tsv(path)]
    if task == "kobest_copa":
        conn = {"원인": "왜냐하면", "결과": "그래서"}
        return [(f"{r['sentence']} {conn[r['question'].strip()]}", [r["1"], r["2"]], int(r["Answer"]) - 1)
                for r in _tsv(path)]
    if task == "kobest_hellaswag":
        return [(f"문장: {r['context']}", [r[f"choice{i}"] for i in range(1, 5)], int(r["label"]))
                for r in _tsv(path)]
    if task == "kobest_sentineg":
        return [(f"문장: {r['Text']} 긍부정:", ["부정", "긍정"], int(r["Label"])) for r in _tsv(path)]
    if task == "kobest_wic":
        return [(f"문장1: {r['SENTENCE1']} 문장2: {r['SENTENCE2']} 두 문장에서 {r['Target']}가 같은 뜻으로 쓰였나?",
                 YES_NO, int(r["ANSWER"].lower() == "true")) for r in _tsv(path)]
    items = json.loads(path.read_text(encoding="utf-8"))
    if task == "klue_sts":
        return [(f"질문: 문장 1과 문장 2는 서로 유사한 의미를 가지나요?\n문장 1: {detok(i['sentence1'])}\n"
                 f"문장 2: {detok(i['sentence2'])}\n정답:", YES_NO, i["labels"]["binary-label"]) for i in items]
    return [(i["title"], YNAT_SHORT, YNAT_ORDER.index(i["label"])) for i in items]


def _raw_dir(task: str) -> tuple[Path, Path]:
    """(raw dir, file): the mirror's file when it has one (YNAT: never), else the sample's."""
    spec = P.protocol()[task]
    rel = next(f.path for f in load_catalog().source(spec.source).files if f.split == spec.split)
    root = MIRROR if (MIRROR / rel).is_file() else SAMPLES
    return root, root / rel


def built_requests(task: str, tmp_path: Path, raw_dir: Path) -> list[tuple[str, list[str], int]]:
    """(context, continuations, gold) of every item, as lm-eval builds them from our kit19 YAML."""
    from lm_eval.api.task import ConfigurableTask

    state = prepare_task(task, P.protocol()[task], None, tmp_path, 0, "kit19", raw_dir)
    assert state["status"] == "scored", state
    t = ConfigurableTask(config=state["config"])
    t.build_all_requests(limit=None, rank=0, world_size=1)
    per_doc: dict[int, list] = {}
    for inst in t.instances:
        per_doc.setdefault(inst.doc_id, []).append(inst)
    out = []
    for doc_id in sorted(per_doc):
        insts = sorted(per_doc[doc_id], key=lambda i: i.idx)
        contexts = {i.arguments[0] for i in insts}
        assert len(contexts) == 1, f"{task} doc {doc_id}: one context for all choices"
        out.append((contexts.pop(), [i.arguments[1] for i in insts], int(insts[0].doc["label"])))
    return out


@pytest.mark.parametrize("task", TASKS)
def test_every_item_builds_the_kit19_requests(task: str, tmp_path: Path):
    root, path = _raw_dir(task)
    want = expected(task, path)
    got = built_requests(task, tmp_path, root)
    assert len(got) == len(want) > 0
    if root == MIRROR:
        assert len(got) == P.protocol()[task].size  # the full published split
    for n, ((ctx, conts, gold), (w_ctx, w_choices, w_gold)) in enumerate(zip(got, want, strict=True)):
        assert ctx == w_ctx, f"{task} item {n}: context"
        assert conts == [" " + c for c in w_choices], f"{task} item {n}: continuations"
        assert gold == w_gold, f"{task} item {n}: gold"


def test_ynat_requests_on_a_written_file(tmp_path: Path):
    """YNAT is not in the mirror: a file of the KLUE format, title kept as is (spaces included)."""
    items = [{"guid": "ynat-v1_dev_00000", "title": " 유튜브 내달 2일까지 크리에이터 지원 공간 운영 ", "label": "생활문화",
              "url": "u", "date": "d"},
             {"guid": "ynat-v1_dev_00001", "title": "어버이날 맑다가 흐려져…남부지방 옅은 황사", "label": "IT과학",
              "url": "u", "date": "d"}]
    root, path = _raw_dir("klue_ynat")
    rel = path.relative_to(root)
    (tmp_path / "raw" / rel).parent.mkdir(parents=True)
    (tmp_path / "raw" / rel).write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    got = built_requests("klue_ynat", tmp_path / "out", tmp_path / "raw")
    assert got == [(" 유튜브 내달 2일까지 크리에이터 지원 공간 운영 ", [" " + c for c in YNAT_SHORT], 3),
                   ("어버이날 맑다가 흐려져…남부지방 옅은 황사", [" " + c for c in YNAT_SHORT], 0)]


def test_loader_documents_keep_what_the_raw_file_has(tmp_path: Path):
    """Quoted fields unquoted as pandas does, trailing spaces kept, WiC brackets kept, empty rows dropped."""
    boolq = tmp_path / "boolq.tsv"
    boolq.write_text('ID\tText\tQuestion\tAnswer\r\n1\t"그는 ""빙고""라고 외쳤다. "\t외쳤나?\tTRUE\r\n'
                     '2\t\t빈 지문\tFalse\r\n3\t문단\t질문 \tFalse\r\n', encoding="utf-8")
    docs = load_documents("kobest_boolq", boolq)
    assert docs == [{"id": "1", "paragraph": '그는 "빙고"라고 외쳤다. ', "question": "외쳤나?", "label": 1},
                    {"id": "3", "paragraph": "문단", "question": "질문 ", "label": 0}]
    wic = tmp_path / "wic.tsv"
    wic.write_text("ID\tTarget\tSENTENCE1\tDictionary 1\tLink 1\tSENTENCE2\tDictionary 2\tLink2\tANSWER\n"
                   "7\t배\t[배]가 고프다.\t1\tl\t[배]를 탔다. \t2\tl\tFalse\n", encoding="utf-8")
    assert load_documents("kobest_wic", wic) == [
        {"id": "7", "word": "배", "context_1": "[배]가 고프다.", "context_2": "[배]를 탔다. ", "label": 0}]


def test_bad_benchmark_file_names_file_and_line(tmp_path: Path):
    copa = tmp_path / "copa.tsv"
    copa.write_text("ID\tsentence\tquestion\t1\t2\tAnswer\n1\t전제\t결과\t가\t나\t3\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"copa.tsv data row 1: label 3 is not one of \[1, 2\]"):
        load_documents("kobest_copa", copa)
    with pytest.raises(DocumentError, match=r"missing column\(s\) Text, Question"):
        load_documents("kobest_boolq", copa)
    boolq = tmp_path / "boolq.tsv"
    boolq.write_text("ID\tText\tQuestion\tAnswer\n1\t문단\t질문\tTrue\n2\t문단\t질문\t아마도\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"boolq.tsv data row 1: label 'True' is not True/False"):
        load_documents("kobest_boolq", boolq)  # a column that is not all booleans is not the loader's
