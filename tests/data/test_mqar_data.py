"""MQAR data: both layouts have the structure they claim, are reproducible, and round-trip to .npz."""

import numpy as np
import pytest

from vla.data import IGNORE, MQARTask, load_npz, paper_mqar, save_npz, zoology_mqar


def test_paper_layout_structure():
    n = 16
    inputs, labels = paper_mqar(n, 50, rng=np.random.default_rng(3))
    assert inputs.shape == labels.shape == (50, 3 * n + 1)
    for x, y in zip(inputs, labels):
        keys, values = x[0:2 * n:2], x[1:2 * n:2]
        assert len(set(keys.tolist())) == n and keys.max() < 64
        assert values.min() >= 64 and values.max() <= 126
        assert x[2 * n] == 127
        queries = x[2 * n + 1:]
        assert sorted(queries.tolist()) == sorted(keys.tolist())     # every key queried once
        lookup = dict(zip(keys.tolist(), values.tolist()))
        assert (y[:2 * n + 1] == IGNORE).all()
        assert y[2 * n + 1:].tolist() == [lookup[q] for q in queries.tolist()]


def test_zoology_layout_structure():
    n, T, vocab = 8, 64, 256
    inputs, labels = zoology_mqar(n, 200, seq_len=T, vocab_size=vocab, rng=np.random.default_rng(4))
    assert inputs.shape == labels.shape == (200, T)
    first_gaps = []
    for x, y in zip(inputs, labels):
        keys, values = x[0:2 * n:2], x[1:2 * n:2]
        assert keys.min() >= 1 and keys.max() < vocab // 2 and len(set(keys.tolist())) == n
        assert values.min() >= vocab // 2
        lookup = dict(zip(keys.tolist(), values.tolist()))
        at = np.flatnonzero(y != IGNORE)
        assert len(at) == n and at.min() >= 2 * n
        for p in at:
            assert y[p] == lookup[int(x[p])]                # answer = value of the key at p
            if p + 1 < T:
                assert x[p + 1] == y[p]                     # and the value follows in the input
        first_gaps.extend(((at - 2 * n) // 2).tolist())
    # power law p(g) ∝ g^(a-1): small gaps are more frequent than large ones
    g = np.asarray(first_gaps)
    G = (T + 1 - 2 * n) // 2
    assert (g < G // 2).mean() > 0.5


def test_seeded_and_indexed_by_step():
    task = MQARTask(n_pairs=4)
    a = task.train_batch(7, 8, seed=1)
    b = task.train_batch(7, 8, seed=1)
    c = task.train_batch(8, 8, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    t1, t2 = task.test_set(8, seed=1), task.test_set(8, seed=1)
    assert np.array_equal(t1[0], t2[0]) and not np.array_equal(t1[0], a[0])
    z = MQARTask(layout="zoology", n_pairs=4, vocab_size=64, seq_len=32)
    assert z.train_batch(0, 3, seed=0)[0].shape == (3, 32) and z.length == 32


def test_npz_round_trip(tmp_path):
    inputs, labels = zoology_mqar(4, 5, seq_len=32, vocab_size=64, rng=np.random.default_rng(0))
    path = tmp_path / "sub" / "mqar.npz"
    save_npz(str(path), inputs, labels)
    i2, l2 = load_npz(str(path))
    assert np.array_equal(i2, inputs) and np.array_equal(l2, labels)
    assert [p.name for p in path.parent.iterdir()] == ["mqar.npz"]   # no temp file left behind
    np.savez(tmp_path / "bad.npz", inputs=inputs)
    with pytest.raises(ValueError, match="labels"):
        load_npz(str(tmp_path / "bad.npz"))


def test_bad_arguments_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_pairs"):
        paper_mqar(65, 2, rng=rng)
    with pytest.raises(ValueError, match="n_pairs"):
        paper_mqar(0, 2, rng=rng)
    with pytest.raises(ValueError, match="seq_len"):
        zoology_mqar(20, 2, seq_len=64, rng=rng)
    with pytest.raises(ValueError, match="power_a"):
        zoology_mqar(2, 2, power_a=0.0, rng=rng)
    with pytest.raises(ValueError, match="layout"):
        MQARTask(layout="other")
    with pytest.raises(ValueError, match="labels"):
        save_npz("/tmp/x.npz", np.zeros((2, 3), np.int64), np.zeros((2, 4), np.int64))
