"""The protocol's metrics and reference predictors on small hand-computed cases."""

import pytest

from dagllm.evaluation import metrics as M


def test_accuracy_by_hand():
    assert M.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75


def test_macro_f1_by_hand():
    # gold 0 0 0 1 1 / pred 0 0 1 1 0: class 0 P=2/3 R=2/3 F1=2/3; class 1 P=1/2 R=1/2 F1=1/2
    assert M.macro_f1([0, 0, 0, 1, 1], [0, 0, 1, 1, 0]) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_macro_f1_averages_over_classes_present_in_gold_or_predictions():
    # three classes present; class 2 is never predicted -> F1 0 counts in the mean
    # class 0: P=1 R=1/2 F1=2/3; class 1: P=1/3 R=1 F1=1/2; class 2: F1=0
    assert M.macro_f1([0, 0, 1, 2], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # a constant predictor on balanced binary gold: F1(0)=2/3, F1(1)=0
    assert M.macro_f1([0, 1, 0, 1], [0, 0, 0, 0]) == pytest.approx(1 / 3)


def test_binary_f1_is_the_positive_class_only():
    # gold 1 1 0 0 / pred 1 0 1 0: positive P=1/2 R=1/2 -> 1/2 (macro would also be 1/2: pick a case that differs)
    assert M.binary_f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    # gold 1 0 0 0 / pred 1 1 0 0: positive P=1/2 R=1 F1=2/3; negative P=1 R=2/3 F1=4/5
    assert M.binary_f1([1, 0, 0, 0], [1, 1, 0, 0]) == pytest.approx(2 / 3)
    assert M.macro_f1([1, 0, 0, 0], [1, 1, 0, 0]) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # never predicting the positive class: F1 0, not an error
    assert M.binary_f1([1, 0, 1], [0, 0, 0]) == 0.0
    # always positive: F1 = 2p / (1 + p) with p the positive fraction
    assert M.binary_f1([1, 0, 0, 0], [1, 1, 1, 1]) == pytest.approx(2 * 0.25 / 1.25)


def test_acc_norm_divides_by_characters_not_bytes():
    # "가나다" is 3 characters but 9 bytes in UTF-8; "abcd" is 4 characters and 4 bytes.
    lls, choices = [-6.0, -7.0], ["가나다", "abcd"]
    assert M.predict(lls) == 0
    # per character: -2.0 vs -1.75 -> choice 1; per byte it would be -0.667 vs -1.75 -> choice 0
    assert M.predict_char_norm(lls, choices) == 1
    assert max(range(2), key=lambda i: lls[i] / len(choices[i].encode())) == 0
    assert M.score(["acc", "acc_norm"], [1], [M.predict(lls)], [M.predict_char_norm(lls, choices)]) == {
        "acc": 0.0, "acc_norm": 1.0}


def test_acc_norm_rejects_mismatched_or_empty_choices():
    with pytest.raises(ValueError, match="2 log-likelihoods for 3 choices"):
        M.predict_char_norm([-1.0, -2.0], ["가", "나", "다"])
    with pytest.raises(ValueError, match="empty choice"):
        M.predict_char_norm([-1.0, -2.0], ["가", ""])


def test_ties_pick_the_first_choice():
    assert M.predict([-1.0, -1.0, -2.0]) == 0


def test_score_names_and_errors():
    assert M.score(["acc", "macro_f1"], [0, 1], [0, 1]) == {"acc": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError, match="unknown metric"):
        M.score(["bleu"], [0], [0])
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        M.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="no items"):
        M.accuracy([], [])


def test_reference_predictors_by_hand():
    # the split has gold 1 1 0 1 2 (majority 1); the scored items are its first three
    refs = M.reference_predictions("t", golds=[1, 1, 0], split_golds=[1, 1, 0, 1, 2], n_choices=3, seed=7)
    assert set(refs) == {"majority", "constant_0", "constant_1", "constant_2", "random"}
    assert refs["majority"] == [1, 1, 1] and refs["constant_0"] == [0, 0, 0] and refs["constant_2"] == [2, 2, 2]
    assert M.score(["acc", "macro_f1"], [1, 1, 0], refs["majority"]) == pytest.approx(
        {"acc": 2 / 3, "macro_f1": (0 + 0.8) / 2})  # class 0: F1 0; class 1: P=2/3 R=1 -> 0.8
    assert M.score(["acc"], [1, 1, 0], refs["constant_0"]) == {"acc": pytest.approx(1 / 3)}


def test_majority_ties_take_the_smallest_choice():
    assert M.majority_label([1, 0, 1, 0]) == 0
    with pytest.raises(ValueError):
        M.majority_label([])


def test_random_predictor_is_seeded_per_task():
    a = M.random_predictions(200, 4, seed=1, task="kobest_copa")
    assert a == M.random_predictions(200, 4, seed=1, task="kobest_copa")
    assert a != M.random_predictions(200, 4, seed=2, task="kobest_copa")
    assert a != M.random_predictions(200, 4, seed=1, task="kobest_wic")
    assert set(a) == {0, 1, 2, 3}


def test_collapse_detection():
    assert M.collapsed_to([1, 1, 1]) == 1
    assert M.collapsed_to([1, 0, 1]) is None
