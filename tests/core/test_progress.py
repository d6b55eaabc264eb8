"""What long work shows while it runs: warnings held back until a bar is done, and a
training's line per epoch (and within an epoch where no live bar shows the steps)."""

from __future__ import annotations

import warnings

import pytest

from sarheight.errors import PlausibilityWarning, deferred_warnings


def test_warnings_inside_a_bar_come_after_it_once_each_with_a_count():
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        with deferred_warnings():
            for _ in range(3):
                warnings.warn("the DEM was cropped to the image", PlausibilityWarning, stacklevel=1)
            warnings.warn("another", UserWarning, stacklevel=1)
            assert shown == []  # nothing through the bar
    assert shown == ["the DEM was cropped to the image (3 times)", "another"]


def test_a_training_says_each_epoch_and_within_it_where_no_bar_shows_the_steps(monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    L = pytest.importorskip("lightning")
    from sarheight.training import progress

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(16, 2), torch.randn(16, 1))
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[progress.TrainingProgress()])
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=4))
    out = capsys.readouterr().out
    assert "epoch 1: step 1/4, loss" in out and "s/step, the epoch ends in about" in out
    assert "epoch 1/2: 4 steps in" in out and "training loss" in out and "left" in out
    assert "epoch 2/2: 4 steps in" in out and "the last epoch" in out


def test_a_long_task_writes_whole_lines_to_a_log_and_a_short_one_nothing(monkeypatch, capsys):
    """Outside a terminal (a log, a pipe, a batch job) the bars of long tasks (terrain
    scenes, predictions, studies) write a whole line every SARHEIGHT_PROGRESS_SECONDS (30 s),
    no carriage return; a task shorter than that writes nothing."""
    import time

    from sarheight.threads import bar

    monkeypatch.setenv("SARHEIGHT_PROGRESS_SECONDS", "0.05")
    shown = bar(total=4, desc="terrain scenes", unit="scene")
    for _ in range(4):
        time.sleep(0.06)
        shown.update(1)
    shown.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith("terrain scenes:") for line in lines) and "\r" not in err
    assert "4/4" in lines[-1]
    monkeypatch.setenv("SARHEIGHT_PROGRESS_SECONDS", "30")
    shown = bar(total=3, desc="short")
    shown.update(3)
    shown.close()
    assert capsys.readouterr().err == ""
