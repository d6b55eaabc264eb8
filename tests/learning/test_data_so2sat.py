"""The So2Sat LCZ42 reader: channel order, lazy per-process handles, the two settings,
statistics and class weights from the training rows, clear errors on bad files, and the
data module with real worker processes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("lightning")
h5py = pytest.importorskip("h5py")

import torch  # noqa: E402

from sarheight.data import (  # noqa: E402
    CHANNELS,
    FILES,
    LCZ_CLASSES,
    S1_CHANNELS,
    S2_CHANNELS,
    ChannelStatistics,
    So2SatDataModule,
    So2SatLCZ42,
    channel_statistics,
    check_file,
    class_weights,
    read_labels,
    setting_indices,
    so2sat,
)
from sarheight.errors import InvalidInputError, MissingInputError  # noqa: E402
from tests.support.scenes import SO2SAT_ROWS, write_tiny_so2sat  # noqa: E402


@pytest.fixture
def root(tmp_path):
    return write_tiny_so2sat(tmp_path / "so2sat")


def patches(path, rows=None) -> np.ndarray:
    """(n, 18, 32, 32) float64 of a file's rows, channels first, Sentinel-1 then -2."""
    with h5py.File(path, "r") as file:
        values = np.concatenate([file["sen1"][()], file["sen2"][()]], axis=-1).transpose(0, 3, 1, 2)
    return values if rows is None else values[rows]


def test_channels_land_in_order_with_shapes_and_dtypes(root):
    assert CHANNELS == S1_CHANNELS + S2_CHANNELS and len(CHANNELS) == 18 and len(LCZ_CLASSES) == 17
    with h5py.File(root / "training.h5", "r+") as file:
        for k in range(8):
            file["sen1"][3, :, :, k] = 100.0 + k
        for k in range(10):
            file["sen2"][3, :, :, k] = 200.0 + k
        expected_label = int(np.argmax(file["label"][3]))
    data = So2SatLCZ42(root, "training")
    assert len(data) == 60 and data.channels == CHANNELS
    x, label = data[3]
    assert x.shape == (18, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert label.shape == () and label.dtype == torch.int64 and int(label) == expected_label
    for k in range(8):
        assert (x[k] == 100 + k).all(), S1_CHANNELS[k]
    for k in range(10):
        assert (x[8 + k] == 200 + k).all(), S2_CHANNELS[k]
    # indices select rows in the order given; negative items count from the end.
    chosen = So2SatLCZ42(root, "training", indices=[7, 3])
    assert len(chosen) == 2 and torch.equal(chosen[1][0], x) and torch.equal(chosen[-1][0], x)
    with pytest.raises(IndexError):
        chosen[2]


def test_the_file_is_opened_lazily_once_per_process(root, monkeypatch):
    data = So2SatLCZ42(root, "validation")
    assert data._handle is None and not data.is_open
    first = data[0]
    handle = data._handle
    assert data.is_open and handle is not None
    data[1], data[5]
    assert data._handle is handle  # one handle for every item
    copy = pickle.loads(pickle.dumps(data))  # as a spawned worker gets it
    assert copy._handle is None and not copy.is_open
    assert torch.equal(copy[0][0], first[0]) and copy.is_open and copy._handle is not handle
    # A forked worker inherits the parent's handle: seeing another process id, it opens its own.
    real = so2sat.os.getpid()
    monkeypatch.setattr(so2sat.os, "getpid", lambda: real + 1)
    assert not data.is_open
    assert torch.equal(data[0][0], first[0]) and data._handle is not handle
    monkeypatch.undo()
    data.close()
    copy.close()
    assert data._handle is None and not copy.is_open


def test_statistics_come_from_the_training_rows_and_normalise(root):
    splits = setting_indices(root, "80-10-10", seed=3)
    name, train = splits["train"]
    statistics = channel_statistics(root / name, train)
    values = patches(root / name, train)
    np.testing.assert_allclose(statistics.mean, values.mean(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(statistics.std, values.std(axis=(0, 2, 3)), rtol=1e-12)
    everything = channel_statistics(root / name)
    np.testing.assert_allclose(everything.mean, patches(root / name).mean(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    assert not np.allclose(everything.mean, statistics.mean)
    # Small chunks (sparse rows read by fancy indexing) and unsorted indices give the same.
    small = channel_statistics(root / name, train[::-1], chunk=7)
    np.testing.assert_allclose(small.mean, statistics.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(small.std, statistics.std, rtol=1e-12)
    # The dataset applies them.
    data = So2SatLCZ42(root, "training", indices=train, statistics=statistics)
    mean, std = np.asarray(statistics.mean)[:, None, None], np.asarray(statistics.std)[:, None, None]
    np.testing.assert_allclose(data[4][0].numpy(), (values[4] - mean) / std, rtol=1e-5, atol=1e-5)
    # Round trip, a constant channel, and refusals.
    assert ChannelStatistics.from_dict(statistics.to_dict()) == statistics
    constant = ChannelStatistics(mean=(1.0,) * 18, std=(0.0, *statistics.std[1:]))
    assert constant.std[0] == 1.0
    with pytest.raises(InvalidInputError, match="std has 17 values"):
        ChannelStatistics(mean=(0.0,) * 18, std=(1.0,) * 17)
    with pytest.raises(InvalidInputError, match=r"not finite for channels \['vh_imag'\]"):
        ChannelStatistics(mean=(0.0, float("nan"), *(0.0,) * 16), std=(1.0,) * 18)
    with pytest.raises(InvalidInputError, match="channels"):
        ChannelStatistics.from_dict({**statistics.to_dict(), "channels": list(CHANNELS[::-1])})
    with pytest.raises(InvalidInputError, match="indices must lie in"):
        channel_statistics(root / name, [0, 60])


def test_labels_and_class_weights(root):
    with h5py.File(root / "testing.h5", "r") as file:
        expected = np.argmax(file["label"][()], axis=1)
    labels = read_labels(root / "testing.h5")
    assert labels.dtype == np.int64 and np.array_equal(labels, expected)
    assert np.array_equal(read_labels(root / "testing.h5", [9, 2, 9]), expected[[9, 2, 9]])
    np.testing.assert_allclose(class_weights([0, 0, 1, 2, 2, 2], num_classes=3), [3.0, 6.0, 2.0])
    with pytest.warns(UserWarning, match=r"\['water'\] have no label"):
        weights = class_weights(np.arange(34) % 16)
    assert weights.dtype == np.float64 and weights[16] == 0 and np.allclose(weights[:16],
                                                                            34 / np.bincount(np.arange(34) % 16))
    with pytest.raises(InvalidInputError, match=r"must lie in \[0, 17\)"):
        class_weights([0, 17])


def test_the_80_10_10_setting_partitions_the_training_file(root):
    for name in ("validation.h5", "testing.h5"):
        (root / name).unlink()  # the setting needs training.h5 only
    splits = setting_indices(root, "80-10-10", seed=0)
    assert {name for name, _ in splits.values()} == {"training.h5"}
    rows = [splits[split][1] for split in ("train", "val", "test")]
    assert [len(r) for r in rows] == [48, 6, 6]
    assert all(np.array_equal(r, np.sort(r)) and r.dtype == np.int64 for r in rows)
    assert np.array_equal(np.sort(np.concatenate(rows)), np.arange(60))  # disjoint and complete
    again = setting_indices(root, "80-10-10", seed=0)
    other = setting_indices(root, "80-10-10", seed=1)
    assert all(np.array_equal(again[s][1], splits[s][1]) for s in splits)
    assert not np.array_equal(other["val"][1], splits["val"][1])
    with pytest.raises(MissingInputError, match=r"lacks \['validation.h5', 'testing.h5'\].*--setting 80-10-10 on the "
                       r"command line, data.setting in a configuration"):
        setting_indices(root, "train-val-test")
    with pytest.raises(InvalidInputError, match="fractions"):
        setting_indices(root, "80-10-10", fractions=(0.8, 0.1, 0.2))


def test_the_train_val_test_setting_takes_the_three_files(root):
    splits = setting_indices(root, "train-val-test")
    assert {split: name for split, (name, _) in splits.items()} == {
        "train": "training.h5", "val": "validation.h5", "test": "testing.h5"}
    assert all(np.array_equal(rows, np.arange(SO2SAT_ROWS[name])) for name, rows in splits.values())
    with pytest.raises(InvalidInputError, match="setting must be one of"):
        setting_indices(root, "random")


def rewrite(path, name, values):
    with h5py.File(path, "r+") as file:
        del file[name]
        if values is not None:
            file[name] = values


def test_bad_files_are_refused_with_what_is_wrong(root):
    path = root / "validation.h5"
    assert check_file(path) == 20
    with h5py.File(path, "r") as file:
        labels = file["label"][()]
    bad_label = labels.copy()
    bad_label[5, (np.argmax(labels[5]) + 1) % 17] = 1
    cases = [
        ("label", None, r"lacks the dataset\(s\) \['label'\]"),
        ("sen2", np.zeros((20, 32, 32, 9)), r"'sen2' has shape \(20, 32, 32, 9\), not the expected \(N, 32, 32, 10\)"),
        ("sen1", np.zeros((20, 32, 32)), r"'sen1' has shape .* \(N, 32, 32, 8\)"),
        ("label", bad_label, "label row 5 is not one-hot"),
        ("label", labels * 0.5, "label row 0 is not one-hot"),
        ("sen1", np.zeros((19, 32, 32, 8)), "different numbers of rows"),
    ]
    for name, values, message in cases:
        broken = root / "broken.h5"
        broken.write_bytes(path.read_bytes())
        rewrite(broken, name, values)
        with pytest.raises(InvalidInputError, match=message):
            check_file(broken)
    (root / "text.h5").write_text("not a file of arrays")
    with pytest.raises(InvalidInputError, match="is not an HDF5 file"):
        check_file(root / "text.h5")
    with pytest.raises(MissingInputError, match="does not exist"):
        check_file(root / "absent.h5")
    rewrite(path, "label", bad_label)
    with pytest.raises(InvalidInputError, match="label row 5"):
        So2SatLCZ42(root, "validation")  # checked at construction
    with pytest.raises(InvalidInputError, match="split must be one of"):
        So2SatLCZ42(root, "train")


def test_arguments_are_checked_before_any_work(root, tmp_path):
    for options, error, message in [
        ({"setting": "90-10"}, InvalidInputError, "data.setting must be one of"),
        ({"seed": -1}, InvalidInputError, "data.seed must be an integer >= 0"),
        ({"batch_size": 0}, InvalidInputError, "data.batch_size must be an integer of at least 1"),
        ({"num_workers": -1}, InvalidInputError, "data.num_workers"),
        ({"limit": 0}, InvalidInputError, "data.limit must be an integer of at least 1"),
    ]:
        with pytest.raises(error, match=message):
            So2SatDataModule(str(root), **options)
    with pytest.raises(MissingInputError, match="is not a folder"):
        So2SatDataModule(str(tmp_path / "nowhere"))
    (root / "testing.h5").unlink()
    with pytest.raises(MissingInputError, match=r"lacks \['testing.h5'\]"):
        So2SatDataModule(str(root))
    So2SatDataModule(str(root), setting="80-10-10")  # training.h5 is enough
    with pytest.raises(RuntimeError, match="setup"):
        _ = So2SatDataModule(str(root), setting="80-10-10").statistics


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def train_labels(root, seed: int) -> list[torch.Tensor]:
    data = So2SatDataModule(str(root), batch_size=8, seed=seed)
    data.setup()
    return [y for _, y in data.train_dataloader()]


def test_the_data_module_end_to_end_with_worker_processes(root):
    data = So2SatDataModule(str(root), batch_size=8)
    assert data.in_channels == 18 and data.num_classes == 17
    data.setup()
    data.setup("fit")  # once
    assert {split: len(dataset) for split, dataset in data.datasets.items()} == {"train": 60, "val": 20, "test": 20}
    assert {split: dataset.path.name for split, dataset in data.datasets.items()} == {
        "train": FILES["training"], "val": FILES["validation"], "test": FILES["testing"]}
    statistics = channel_statistics(root / "training.h5")
    assert data.statistics == statistics
    # Raw patches (the classifier normalises, once, with the statistics it keeps).
    assert all(dataset.statistics is None for dataset in data.datasets.values())
    raw = So2SatLCZ42(root, "testing")
    assert torch.equal(data.datasets["test"][3][0], raw[3][0])
    np.testing.assert_allclose(data.class_weights, class_weights(read_labels(root / "training.h5")))
    serial = batches(data.val_dataloader())
    assert [len(y) for _, y in serial] == [8, 8, 4]  # drop_last=False
    workers = So2SatDataModule(str(root), batch_size=8, num_workers=2)
    workers.setup()
    workers.datasets["val"][0]  # the parent holds a handle: the forked workers must open their own
    loader = workers.val_dataloader()
    assert loader.persistent_workers and loader.num_workers == 2
    parallel = batches(loader)
    assert len(parallel) == len(serial)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel, strict=True))
    del loader
    # Training batches: shuffled, the same order for the same seed, another for another seed.
    first = [y for _, y in data.train_dataloader()]
    assert torch.equal(torch.cat(first).sort().values, torch.as_tensor(read_labels(root / "training.h5")).sort().values)
    assert all(torch.equal(a, b) for a, b in zip(first, train_labels(root, seed=0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, train_labels(root, seed=1), strict=True))
    x, y = next(iter(data.test_dataloader()))
    assert x.shape == (8, 18, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_limit_keeps_the_first_rows_of_each_split(root):
    data = So2SatDataModule(str(root), setting="80-10-10", seed=2, batch_size=4, limit=5)
    with pytest.warns(UserWarning, match="have no label among the 5"):
        data.setup()
    splits = setting_indices(root, "80-10-10", seed=2)
    for split, dataset in data.datasets.items():
        assert np.array_equal(dataset.indices, splits[split][1][:5])
    statistics = channel_statistics(root / "training.h5", splits["train"][1][:5])
    assert data.statistics == statistics
    assert sum(len(y) for _, y in data.train_dataloader()) == 5


def test_statistics_of_the_same_rows_are_read_once_while_the_file_is_unchanged(tmp_path):
    import os

    from tests.support.scenes import write_tiny_so2sat

    root = write_tiny_so2sat(tmp_path / "cache")
    first = channel_statistics(root / "training.h5", [3, 1, 2])
    assert channel_statistics(root / "training.h5", [1, 2, 3]) is first  # same rows, any order
    assert channel_statistics(root / "training.h5", [1, 2]) is not first
    # Rewritten (another modification time): computed again, from the new contents.
    write_tiny_so2sat(root, seed=5)
    later = os.stat(root / "training.h5").st_mtime_ns + 10**9
    os.utime(root / "training.h5", ns=(later, later))
    again = channel_statistics(root / "training.h5", [1, 2, 3])
    assert again is not first and again != first
