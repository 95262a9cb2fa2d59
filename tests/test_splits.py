"""Patient-level splits are deterministic and disjoint; generators can only ever receive training cases."""

from __future__ import annotations

import pytest

from foscu_bench.data.dataset import open_dataset
from foscu_bench.data.splits import LeakageError, Split, TrainingSet, make_split, require_training_set, split_dataset
from foscu_bench.errors import ConfigError


def test_split_is_deterministic_disjoint_and_complete():
    cases = {f"c{i}": f"c{i}" for i in range(20)}
    a, b = make_split(cases, seed=3), make_split(cases, seed=3)
    assert a == b
    assert make_split(cases, seed=4) != a
    parts = [set(a.train), set(a.val), set(a.test)]
    assert sum(map(len, parts)) == 20 and set().union(*parts) == set(cases)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert (len(a.train), len(a.val), len(a.test)) == (12, 2, 6)
    assert Split.from_dict(a.to_dict()) == a


def test_split_keeps_patients_together():
    cases = {f"p{i}_scan{j}": f"p{i}" for i in range(10) for j in range(3)}
    split = make_split(cases, seed=0)
    for part in (split.train, split.val, split.test):
        patients = {cases[c] for c in part}
        others = {cases[c] for p in (split.train, split.val, split.test) if p is not part for c in p}
        assert not patients & others


def test_split_edge_cases():
    tiny = make_split({"a": "a", "b": "b"}, seed=0)
    assert len(tiny.train) == 1 and len(tiny.test) == 1 and tiny.val == ()
    with pytest.raises(ConfigError, match="at least 2 patients"):
        make_split({"a": "a"}, seed=0)
    with pytest.raises(ConfigError, match="sum"):
        make_split({"a": "a", "b": "b"}, seed=0, fractions=(0.5, 0.5, 0.5))


def test_generators_cannot_receive_test_cases():
    ds = open_dataset("phantom", profile="tiny")
    split = split_dataset(ds, seed=0)
    training = TrainingSet.from_dataset(ds, split)
    assert set(training.case_ids) == set(split.train) and require_training_set(training) is training
    test_pair = ds.pair(split.test[0])
    with pytest.raises(LeakageError, match="not in the training split"):
        TrainingSet([*training, test_pair], split)
    with pytest.raises(LeakageError, match="TrainingSet"):
        require_training_set(list(training))
    # a case of a held-out patient under another case id is refused too
    from dataclasses import replace

    disguised = replace(training[0], patient_id=ds.record(split.test[0]).patient_id)
    with pytest.raises(LeakageError, match="held out"):
        TrainingSet([disguised], split)
