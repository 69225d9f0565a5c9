"""Decontamination: planted copies and near copies of benchmark items are dropped and reported."""

import json

import pandas as pd

from dagllm.data.canonical import CANONICAL_COLUMNS
from dagllm.data.overlap import benchmark_units, decontaminate_frame
from dagllm.data.records import RECORD_COLUMNS
from dagllm.params import DecontaminateParams

# Benchmark items written for this test in the KoBEST COPA / BoolQ and KLUE STS field layouts.
BENCH = [
    ("kobest_copa", "test", {"premise": "아이가 놀이터에서 넘어져 무릎을 다쳤다.", "question": "결과",
                             "alternative_1": "엄마가 상처에 연고를 발라 주었다.", "alternative_2": "아이는 새 운동화를 샀다."}),
    ("kobest_boolq", "test", {"passage": "해바라기는 국화과에 속하는 한해살이풀로 키가 2미터까지 자라며 "
                              "여름에 노란 꽃을 피운다. 씨앗은 기름을 짜거나 간식으로 먹는다.",
                              "question": "해바라기는 여러해살이풀인가?"}),
    ("klue_sts", "validation", {"sentence1": "주말에 근처 구립 도서관은 보통 몇 시까지 문을 여나요?",
                                "sentence2": "이번 주말 동네 도서관 운영 시간이 어떻게 되나요?", "score": "3.40"}),
]


def _canonical() -> pd.DataFrame:
    rows = [{"id": f"b{i}", "source": s, "split": sp, "native_id": str(i), "fields": json.dumps(f, ensure_ascii=False),
             "label": "1", "license": "CC BY-SA 4.0", "benchmark": True, "file": "f", "line": i + 1}
            for i, (s, sp, f) in enumerate(BENCH)]
    rows.append({"id": "t0", "source": "kobest_copa", "split": "train", "native_id": "9",
                 "fields": json.dumps({"premise": "학습용 문장입니다 이것은 평가셋이 아닙니다"}, ensure_ascii=False),
                 "label": "1", "license": "x", "benchmark": False, "file": "f", "line": 1})
    return pd.DataFrame(rows, columns=CANONICAL_COLUMNS)


def _rec(i, instruction, input_, output, source="nsmc", task="nsmc_sentiment"):
    return {"id": f"r{i}", "record_id": f"c{i}", "task": task, "category": "c", "template_id": "t",
            "template_kind": "instruction", "instruction": instruction, "input": input_, "output": output,
            "source": source, "split": "train", "license": "CC0"}


def _records() -> pd.DataFrame:
    rows = [
        # exact copy of the COPA test premise and alternatives inside a rendered COPA template
        _rec(0, "다음 문장을 읽고 결과로 알맞은 것을 고르세요.",
             "문장: 아이가 놀이터에서 넘어져 무릎을 다쳤다.\n보기 1: 엄마가 상처에 연고를 발라 주었다.\n보기 2: 아이는 새 운동화를 샀다.",
             "엄마가 상처에 연고를 발라 주었다.", "kobest_copa", "kobest_copa_causal"),
        # the BoolQ passage, re-spaced and with one particle changed: a near copy
        _rec(1, "지문을 읽고 질문에 답하세요.", "해바라기는 국화과에 속하는 한해살이 풀로 키가 2미터 까지 자라고 여름에 노란꽃을 "
             "피운다. 씨앗은 기름을 짜거나 간식으로 먹는다.", "예", "kobest_boolq", "kobest_boolq_qa"),
        # one KLUE STS sentence inside a paraphrase record (as ParaKQC shares sentences with KLUE STS)
        _rec(2, "다음 질문과 같은 뜻의 질문을 쓰세요.", "주말에 근처 구립 도서관은 보통 몇 시까지 문을 여나요?",
             "토요일에 가까운 도서관은 언제 닫나요?", "parakqc", "parakqc_paraphrase"),
    ]
    rows += [_rec(10 + i, "다음 영화 리뷰의 감정을 분류하세요.", f"배우들의 연기가 정말 좋았고 음악도 훌륭했어요 {i}", "긍정")
             for i in range(20)]
    rows.append(_rec(40, "다음 문장을 분류하세요.", "아이가 놀이터에서 신나게 뛰어 놀았다.", "긍정"))  # shares a few words only
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def test_units_are_whole_items_and_long_fields():
    units = benchmark_units(_canonical(), 20, 8)
    assert {(u.source, u.field) for u in units} == {
        ("kobest_copa", "*"), ("kobest_boolq", "*"), ("kobest_boolq", "passage"),
        ("klue_sts", "*"), ("klue_sts", "sentence1"), ("klue_sts", "sentence2")}
    copa = next(u for u in units if u.source == "kobest_copa")
    # letters and digits only: spacing and punctuation differ between copies
    assert copa.pieces == ["아이가놀이터에서넘어져무릎을다쳤다", "엄마가상처에연고를발라주었다", "아이는새운동화를샀다"]


def test_a_shared_everyday_sentence_alone_is_not_contamination():
    records = pd.DataFrame([_rec(0, "다음 문장을 읽고 답하세요.", "문장: 비가 많이 내렸다.\n보기 1: 엄마가 상처에 연고를 발라 주었다.",
                                 "엄마가 상처에 연고를 발라 주었다.")], columns=RECORD_COLUMNS)
    kept, s = decontaminate_frame(records, _canonical(), DecontaminateParams())
    assert s.dropped == 0 and len(kept) == 1


def test_planted_copies_and_near_copies_are_dropped_and_reported():
    records = _records()
    kept, s = decontaminate_frame(records, _canonical(), DecontaminateParams())
    dropped = {h["id"]: h for h in s.contaminated}
    assert set(dropped) == {"r0", "r1", "r2"}
    assert dropped["r0"]["kind"] == "exact_copy" and dropped["r0"]["benchmark"]["source"] == "kobest_copa"
    assert dropped["r0"]["benchmark"]["field"] == "*" and dropped["r0"]["benchmark"]["id"] == "b0"
    assert dropped["r1"]["kind"] == "ngram_overlap" and 0.5 <= dropped["r1"]["overlap"] < 1.0
    assert dropped["r1"]["benchmark"]["field"] == "passage" and dropped["r1"]["benchmark"]["id"] == "b1"
    assert dropped["r2"]["kind"] == "exact_copy" and dropped["r2"]["benchmark"]["field"] == "sentence1"
    assert s.by_benchmark_source == {"klue_sts": 1, "kobest_boolq": 1, "kobest_copa": 1}
    assert s.by_training_source == {"kobest_boolq": 1, "kobest_copa": 1, "parakqc": 1}
    assert s.records == len(kept) + s.dropped == len(records)
    assert "r40" in set(kept["id"]) and len(kept) == 21


def test_threshold_and_n_are_params_but_exact_copies_always_go():
    _, strict = decontaminate_frame(_records(), _canonical(), DecontaminateParams(threshold=1.0))
    # the near copy differs from the passage in one word only (자라며 -> 자라고): still caught at 1.0
    assert {h["id"] for h in strict.contaminated} == {"r0", "r1", "r2"}
    records = _records()
    records.loc[1, "input"] = records.loc[1, "input"].replace("여름에 노란꽃을", "가을에 붉은 열매를")  # two more words
    _, strict = decontaminate_frame(records, _canonical(), DecontaminateParams(threshold=1.0, edit_similarity=1.0))
    assert {h["id"] for h in strict.contaminated} == {"r0", "r2"}
    _, loose = decontaminate_frame(_records(), _canonical(), DecontaminateParams(threshold=0.2, ngram_chars=4))
    assert {"r0", "r1", "r2"} <= {h["id"] for h in loose.contaminated}


def test_cli_writes_report(workdir):
    from typer.testing import CliRunner

    from dagllm.cli import app

    (workdir / "data/validated").mkdir(parents=True)
    _records().to_parquet(workdir / "data/validated/records.parquet", index=False)
    _canonical().to_parquet(workdir / "data/validated/canonical.parquet", index=False)  # the gate's kept rows
    result = CliRunner().invoke(app, ["decontaminate"])
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "reports/decontamination.json").read_text())
    assert report["dropped"] == 3 and report["by_kind"] == {"exact_copy": 2, "ngram_overlap": 1}
    assert len(pd.read_parquet(workdir / "data/decontaminated/records.parquet")) == 21


# Short single-sentence benchmark items written for this test in KoBEST SentiNeg's test layout, and
# training rows that hold them exactly, lightly edited, or not at all.
SENTINEG = ["배송이 빨라서 정말 좋지는 않았어요", "포장이 엉망이 아니라 실망하지 않았습니다",
            "가격 대비 품질이 훌륭하지 않아요", "사용해도 고장이 나지 않았어요"]
HOST = "이번 달에 산 물건들을 정리하면서 느낀 점을 적어 둔다. {} 다음에도 같은 가게를 이용할지 고민이다."


def _sentineg_canonical() -> pd.DataFrame:
    rows = [{"id": f"s{i}", "source": "kobest_sentineg", "split": "test", "native_id": str(i),
             "fields": json.dumps({"text": t, "text_origin": "원래 문장은 여기에 따로 있습니다", "label_origin": "1"},
                                  ensure_ascii=False),
             "label": "0", "license": "CC BY-SA 4.0", "benchmark": True, "file": "f", "line": i + 2}
            for i, t in enumerate(SENTINEG)]
    return pd.DataFrame(rows, columns=CANONICAL_COLUMNS)


def test_short_items_are_matched_exactly_and_with_light_edits_but_not_look_alikes():
    edits = {
        "exact": SENTINEG,
        "punctuation": [t + "!!" for t in SENTINEG[:2]] + [t.replace(" ", ", ", 1) for t in SENTINEG[2:]],
        "whitespace": [t.replace(" ", "") for t in SENTINEG[:2]] + [t.replace("대비", "대 비") for t in SENTINEG[2:3]],
        "word": ["배송이 빨라서 너무 좋지는 않았어요", "포장이 엉망이 아니라 화나지 않았습니다",
                 "가격 대비 디자인이 훌륭하지 않아요", "써봐도 고장이 나지 않았어요"],
    }
    rows = [_rec(f"{kind}{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for kind, ts in edits.items()
            for j, t in enumerate(ts)]
    # clean rows: same domain, words in common, but no benchmark sentence
    clean = ["배송이 늦어서 정말 아쉬웠어요", "포장이 깔끔해서 좋았습니다", "가격이 싸서 품질은 기대하지 않았어요",
             "한 달 사용했는데 고장이 났어요", "정말 좋았어요 다시 살게요"]
    rows += [_rec(f"clean{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for j, t in enumerate(clean)]
    _, s = decontaminate_frame(pd.DataFrame(rows, columns=RECORD_COLUMNS), _sentineg_canonical(),
                               DecontaminateParams())
    caught = {h["id"] for h in s.contaminated}
    assert {f"r{kind}{j}" for kind, ts in edits.items() for j in range(len(ts))} == caught
    assert {h["benchmark"]["field"] for h in s.contaminated} == {"text"}
    kinds = {h["id"]: h["kind"] for h in s.contaminated}
    assert all(kinds[f"rexact{j}"] == "exact_copy" for j in range(4))
    assert all(kinds[f"rpunctuation{j}"] == "exact_copy" for j in range(4))  # punctuation is not text


def test_short_items_are_not_units_when_the_source_is_not_listed():
    canonical = _sentineg_canonical()
    rows = [_rec(0, "다음 글을 요약하세요.", HOST.format(SENTINEG[0]), "요약")]
    _, s = decontaminate_frame(pd.DataFrame(rows, columns=RECORD_COLUMNS), canonical,
                               DecontaminateParams(unit_fields={}))
    assert s.dropped == 0  # 15 letters, under min_unit_chars, and text + text_origin not both there


def test_an_item_of_short_texts_with_one_word_replaced_across_them_is_caught():
    # written for this test in the KoBEST WiC layout: two short contexts sharing a target word
    item = {"word": "배", "context_1": "배 한 척이 떠났다.", "context_2": "배가 아파서 급히 동네 병원에 갔다."}
    canonical = pd.DataFrame([{"id": "w0", "source": "kobest_wic", "split": "test", "native_id": "0",
                               "fields": json.dumps(item, ensure_ascii=False), "label": "0",
                               "license": "CC BY-SA 4.0", "benchmark": True, "file": "f", "line": 2}],
                             columns=CANONICAL_COLUMNS)
    leaks = ["배 한 조금 떠났다. 배가 아파서 급히 동네 병원에 갔다.",  # 척이 replaced: 배한 + 떠났다 alone is 5 letters
             "배 한 척이 떠났다. 배가 아파서 급히 동네 병원에 다시"]  # the last word replaced
    clean = ["배가 아파서 급히 동네 병원에 갔다.",  # one context alone is not the item
             "배 한 척이 떠났다.",
             "배 두 척이 보였고 항구는 조용했다. 머리가 아파서 약국에 갔다."]
    rows = [_rec(f"leak{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for j, t in enumerate(leaks)]
    rows += [_rec(f"clean{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for j, t in enumerate(clean)]
    _, s = decontaminate_frame(pd.DataFrame(rows, columns=RECORD_COLUMNS), canonical, DecontaminateParams())
    assert {h["id"] for h in s.contaminated} == {"rleak0", "rleak1"}
    assert {h["kind"] for h in s.contaminated} == {"ngram_overlap"}


def _sentineg_items(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"id": f"s{i}", "source": "kobest_sentineg", "split": "test", "native_id": str(i),
                          "fields": json.dumps({"text": t, "label_origin": "1"}, ensure_ascii=False), "label": "0",
                          "license": "CC BY-SA 4.0", "benchmark": True, "file": "f", "line": i + 2}
                         for i, t in enumerate(texts)], columns=CANONICAL_COLUMNS)


def test_a_short_sentence_with_a_word_replaced_that_leaves_no_ngram_is_found_by_its_words():
    # 배송이 너무 느려요: every 5-letter n-gram of 배송이너무느려요 holds a letter of 너무, so the edited copy
    # shares none of them; its words around the replaced one still line up
    items = _sentineg_items(["배송이 너무 느려요", "완전 거북이배송"])
    leaks = ["배송이 정말 느려요", "배송이 느려요"]  # replaced; dropped
    clean = ["배송이 정말 빨라요",  # two of three words, but the rest (배송이) is one word
             "배송이 오늘 도착했는데 느려요",  # the words are there but not side by side
             "완전 최고예요"]  # a two-word item with one replaced leaves one word: never a copy
    rows = [_rec(f"leak{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for j, t in enumerate(leaks)]
    rows += [_rec(f"clean{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for j, t in enumerate(clean)]
    _, s = decontaminate_frame(pd.DataFrame(rows, columns=RECORD_COLUMNS), items, DecontaminateParams())
    assert {h["id"] for h in s.contaminated} == {"rleak0", "rleak1"}
    assert {h["benchmark"]["id"] for h in s.contaminated} == {"s0"}


def test_words_common_in_the_records_do_not_vouch_for_a_copy():
    # 좋을 것 같습니다 ends many ordinary sentences: after another first word it is not the item
    items = _sentineg_items(["보관하기 좋을 것 같습니다"])
    common = [f"{w} 하면 좋을 것 같습니다" for w in ("내일", "모레", "주말에", "다음에", "함께", "천천히", "미리",
                                              "조금씩", "자주", "가끔", "일찍", "늦게", "같이", "혼자", "다시",
                                              "먼저", "나중에", "오전에", "오후에", "저녁에", "밤에", "새벽에")]
    rows = [_rec(f"clean{j}", "다음 글을 요약하세요.", HOST.format(t), "요약") for j, t in enumerate(common)]
    rows.append(_rec("leak", "다음 글을 요약하세요.", HOST.format("보관하기 정말 것 같습니다"), "요약"))  # 좋을 replaced
    _, s = decontaminate_frame(pd.DataFrame(rows, columns=RECORD_COLUMNS), items, DecontaminateParams())
    assert len(rows) - 1 > 20  # more records than COMMON_WORD_RECORDS hold 좋을, 것 and 같습니다
    assert {h["id"] for h in s.contaminated} == {"rleak"}


def test_benchmark_texts_too_short_to_match_are_named_in_the_report():
    items = _sentineg_items(["좋아요", "싸다!", "배송이 너무 느려요"])
    rows = [_rec("copy", "다음 글을 요약하세요.", HOST.format("좋아요"), "요약")]
    _, s = decontaminate_frame(pd.DataFrame(rows, columns=RECORD_COLUMNS), items, DecontaminateParams())
    assert [(t["id"], t["field"], t["text"]) for t in s.too_short] == [("s0", "text", "좋아요"), ("s1", "text", "싸다!")]
    assert s.dropped == 0 and "2 benchmark texts too short to match" in s.lines()[1]
