"""The shared model test: a mixin that a model's test class subclasses.

    class TestMyModel(ModelTester):
        def make(self, in_channels, seed):
            torch.manual_seed(seed)
            return build("my_model", in_channels=in_channels, base_channels=8)

The mixin's tests then check what every model of the house must do: a forward and a
backward pass with finite gradients on every parameter, input sizes that are not
multiples of the model's stride, every number of input channels of :attr:`channels`,
the same output from the same seed, a state-dict round trip through ``torch.save`` and
``torch.load(weights_only=True)``, training and evaluation mode, a batch of one, and the
independence of the samples of a batch. Models with several inputs (MBHR-Net takes a
Sentinel-1 and a Sentinel-2 series) override :meth:`inputs`; models whose output is not
one map per input cell override :meth:`expected_shape`.

No test lives here (the class name does not start with ``Test``); pytest collects the
mixin's tests on each subclass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ModelTester:
    """Mixin of the shared model tests. Subclasses define :meth:`make` and may override
    the attributes and the other methods."""

    #: The ``in_channels`` values the model must take, passed as they are to :meth:`make`
    #: and :meth:`inputs` (a two-input model may use pairs).
    channels: tuple[Any, ...] = tuple(range(1, 9))
    #: The ``in_channels`` of the tests that do not vary the channels.
    default_channels: Any = 4
    #: The input size (height, width) of the tests that do not vary the size.
    default_size: tuple[int, int] = (32, 32)
    #: Input sizes to run, among them sizes that are not multiples of any stride.
    sizes: tuple[tuple[int, int], ...] = ((37, 53), (64, 65), (17, 16), (1, 1), (3, 70))

    # ---- what a subclass gives ------------------------------------------------------

    def make(self, in_channels: Any, seed: int) -> nn.Module:
        """A new model taking ``in_channels``, its parameters drawn after ``torch.manual_seed(seed)``."""
        raise NotImplementedError("a ModelTester subclass defines make(in_channels, seed)")

    def inputs(self, batch: int, channels: Any, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """The positional inputs of the model's forward for a batch (float32, standard normal)."""
        generator = torch.Generator().manual_seed(seed)
        return (torch.randn(batch, channels, height, width, generator=generator),)

    def expected_shape(self, batch: int, channels: Any, height: int, width: int) -> tuple[int, ...]:
        """The output shape for inputs of :meth:`inputs`' shape: one map per input cell."""
        return (batch, 1, height, width)

    def run_model(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's output for ``inputs`` (one tensor)."""
        return model(*inputs)

    # ---- helpers --------------------------------------------------------------------

    def _eval_output(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return self.run_model(model, inputs)

    # ---- the shared tests -----------------------------------------------------------

    def test_forward_backward(self):
        """One forward and backward pass in training mode: the output has the expected shape
        and is finite; every parameter gets a finite gradient, and the gradient is not zero."""
        model = self.make(self.default_channels, seed=0)
        model.train()
        inputs = self.inputs(2, self.default_channels, *self.default_size)
        output = self.run_model(model, inputs)
        assert tuple(output.shape) == self.expected_shape(2, self.default_channels, *self.default_size)
        assert torch.isfinite(output).all()
        output.square().mean().backward()
        total = 0.0
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            assert parameter.grad is not None, f"{name} gets no gradient: it takes no part in the output"
            assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
            total += float(parameter.grad.square().sum())
        assert total > 0.0

    def test_input_sizes(self):
        """Sizes that are not multiples of the model's stride (odd, prime, one cell, thin
        strips) give outputs of the expected shape, finite, in evaluation mode."""
        model = self.make(self.default_channels, seed=0)
        for height, width in self.sizes:
            output = self._eval_output(model, self.inputs(1, self.default_channels, height, width))
            expected = self.expected_shape(1, self.default_channels, height, width)
            assert tuple(output.shape) == expected, f"input {height} x {width}: {tuple(output.shape)} != {expected}"
            assert torch.isfinite(output).all(), f"input {height} x {width}: non-finite output"

    def test_input_channels(self):
        """The model builds and runs (forward and backward) for every channel count of
        :attr:`channels`, and its output depends on every input channel."""
        height, width = self.default_size
        for channels in self.channels:
            model = self.make(channels, seed=0)
            inputs = self.inputs(2, channels, height, width)
            output = self.run_model(model.train(), inputs)
            assert tuple(output.shape) == self.expected_shape(2, channels, height, width), channels
            output.mean().backward()
            reference = self._eval_output(model, inputs)
            for index in range(len(inputs)):
                if inputs[index].shape[1] == 0:
                    continue  # an input of no channels (a sensor left out) has nothing to change
                # Change the last channel of one input only: the output must change with it.
                changed = tuple(t.clone() for t in inputs)
                changed[index][:, -1] += 1.0
                assert not torch.equal(self._eval_output(model, changed), reference), \
                    f"{channels} channels: the output ignores the last channel of input {index}"

    def test_same_seed_same_model(self):
        """Two models made with the same seed give identical outputs; another seed differs."""
        inputs = self.inputs(2, self.default_channels, *self.default_size)
        first = self._eval_output(self.make(self.default_channels, seed=7), inputs)
        second = self._eval_output(self.make(self.default_channels, seed=7), inputs)
        other = self._eval_output(self.make(self.default_channels, seed=8), inputs)
        assert torch.equal(first, second)
        assert not torch.allclose(first, other)

    def test_state_dict_round_trip(self, tmp_path):
        """A state dict saved with ``torch.save`` and loaded with ``weights_only=True`` into a
        model made with another seed reproduces the outputs exactly, after some training
        has moved the parameters and the normalisation statistics."""
        model = self.make(self.default_channels, seed=1)
        optimiser = torch.optim.SGD(model.parameters(), lr=1e-2)
        model.train()
        for step in range(2):
            optimiser.zero_grad()
            self.run_model(model,
                           self.inputs(2, self.default_channels, *self.default_size, seed=step)).mean().backward()
            optimiser.step()
        path = tmp_path / "model.pt"
        torch.save(model.state_dict(), path)
        restored = self.make(self.default_channels, seed=2)
        inputs = self.inputs(2, self.default_channels, *self.default_size, seed=9)
        assert not torch.equal(self._eval_output(restored, inputs), self._eval_output(model, inputs))
        restored.load_state_dict(torch.load(path, weights_only=True))
        assert torch.equal(self._eval_output(restored, inputs), self._eval_output(model, inputs))

    def test_train_and_eval_modes(self):
        """Both modes run on a batch of one; evaluation is deterministic and does not
        change the model's state (its batch-normalisation statistics)."""
        model = self.make(self.default_channels, seed=0)
        single = self.inputs(1, self.default_channels, *self.default_size)
        model.train()
        output = self.run_model(model, single)
        assert tuple(output.shape) == self.expected_shape(1, self.default_channels, *self.default_size)
        assert torch.isfinite(output).all()
        output.mean().backward()
        state = {name: value.clone() for name, value in model.state_dict().items()}
        first = self._eval_output(model, single)
        second = self._eval_output(model, single)
        assert torch.isfinite(first).all()
        assert torch.equal(first, second)
        for name, value in model.state_dict().items():
            assert torch.equal(value, state[name]), f"evaluation changed {name}"

    def test_samples_of_a_batch_are_independent(self):
        """In evaluation mode each sample's output is the output of that sample alone."""
        model = self.make(self.default_channels, seed=0)
        batch = self.inputs(3, self.default_channels, *self.default_size, seed=3)
        together = self._eval_output(model, batch)
        for i in range(3):
            alone = self._eval_output(model, tuple(t[i:i + 1] for t in batch))
            torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-5)
