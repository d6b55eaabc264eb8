"""Benchmark of the building-height models on the CPU: training step and inference.

For MBHR-Net as the paper has it (two ResNet-50 encoders of three residual stages,
features of 64/256/512/1024 channels fused by concatenation; the default decoder), with
the released code's sum fusion, the single-sensor networks (Sentinel-1 only, Sentinel-2
only), and the two CPU-sized models of the configs (``sarheight/configs/buildings_mbhr.yaml``:
two stages; ``sarheight/configs/buildings_demo.yaml``: one stage): the warm time of a training step
(forward, MBHR-Net's loss, backward and an Adam step on a batch of tiles of 2 + 10
channels), the inference rate in km^2/s (the same batch, evaluation mode, no autograd; 10
m cells), in wall time and in process CPU time, and the parameter count. Models are
timed in alternation over ``--rounds`` rounds, best of each, so that a change of the
machine's load shifts all of them alike. Writes JSON with the load average.

    python benchmarks/buildings.py --out benchmarks/results/buildings.json [--batch 8] [--size 128]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from _common import best_cpu_time, best_time, finish, loadavg, machine

from sarheight.models import MBHRNet
from sarheight.training.losses import mbhr_loss

#: The configurations timed: name -> MBHRNet keyword arguments.
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "mbhr_concat": {"fusion": "concat", "stages": 3},
    "mbhr_sum": {"fusion": "sum", "stages": 3},
    "s1_only": {"s2_channels": 0, "stages": 3},
    "s2_only": {"s1_channels": 0, "stages": 3},
    "cpu_config": {"fusion": "concat", "stages": 2, "decoder_channels": (64, 32, 16)},
    "demo_config": {"fusion": "concat", "stages": 1, "decoder_channels": (32, 16)},
}


def setup(name: str, args: argparse.Namespace):
    """The model, its Adam optimiser and a batch, and the training and inference steps."""
    torch.manual_seed(0)
    model = MBHRNet(**{"s1_channels": 2, "s2_channels": 10, **CONFIGURATIONS[name]})
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    # A single-sensor network gets its sensor only (the other's input has no channels).
    s1 = torch.randn(args.batch, model.s1_channels, args.size, args.size, generator=generator)
    s2 = torch.randn(args.batch, model.s2_channels, args.size, args.size, generator=generator)
    target = torch.rand(args.batch, 1, args.size, args.size, generator=generator) * 30
    mask = torch.ones_like(target, dtype=torch.bool)

    def train_step() -> None:
        model.train()
        optimiser.zero_grad(set_to_none=True)
        mbhr_loss(model(s1, s2), target, mask).backward()
        optimiser.step()

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            model(s1, s2)

    return model, train_step, infer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/buildings.json")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="tile side, cells of 10 m (128: the paper's patches)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of alternating timings (best of each)")
    parser.add_argument("--configuration", action="append", choices=tuple(CONFIGURATIONS), default=None,
                        help="restrict the configurations (default all)")
    args = parser.parse_args(argv)
    names = args.configuration or list(CONFIGURATIONS)
    load_start = loadavg()
    print(f"load average {load_start}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    batch_km2 = args.batch * args.size**2 * 100.0 / 1e6
    best: dict[str, dict[str, float]] = {}
    for round_ in range(args.rounds):
        for name in names:
            _, train_step, infer = setup(name, args)
            timing = {"train_step_s": best_time(train_step, repeats=2, min_total=0.0),
                      "inference_s": best_time(infer, repeats=3),
                      "train_step_cpu_s": best_cpu_time(train_step, repeats=2),
                      "inference_cpu_s": best_cpu_time(infer, repeats=3)}
            entry = best.setdefault(name, timing)
            for key, value in timing.items():
                entry[key] = min(entry[key], value)
            print(f"round {round_ + 1} {name:12s} train step {timing['train_step_s']:6.3f} s "
                  f"({timing['train_step_cpu_s']:6.3f} s CPU)  inference {timing['inference_s']:6.3f} s", flush=True)
    rows = []
    for name in names:
        model, _, _ = setup(name, args)
        timing = best[name]
        row = {"configuration": name, "model": {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in model.config.items()},
               "parameters": sum(p.numel() for p in model.parameters()), **timing,
               "train_km2_per_s": batch_km2 / timing["train_step_s"],
               "inference_km2_per_s": batch_km2 / timing["inference_s"],
               "inference_km2_per_cpu_s": batch_km2 / timing["inference_cpu_s"]}
        rows.append(row)
        print(f"{name:12s} {row['parameters']:>11,} parameters  train step {row['train_step_s']:.3f} s  "
              f"inference {row['inference_km2_per_s']:.2f} km2/s", flush=True)
    result: dict[str, Any] = {
        "benchmark": "buildings", "machine": {**machine(), "torch": torch.__version__,
                                              "torch_threads": torch.get_num_threads()},
        "configuration": {"batch": args.batch, "size": args.size, "cell_m": 10.0, "batch_km2": batch_km2,
                          "inputs": "Sentinel-1 2 channels, Sentinel-2 10 channels", "loss": "mbhr_loss 0.2/0.8",
                          "optimiser": "Adam"},
        "results": rows,
    }
    return finish(result, args.out, load_start)


if __name__ == "__main__":
    sys.exit(main())
