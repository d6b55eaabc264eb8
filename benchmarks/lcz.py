"""Benchmark of the LCZ fusion network on the CPU: patches per second of training and of
inference for each input split and fusion stage.

For every split (SAR only, optical only, SAR | optical, the seven physical groups) and
every fusion stage (0-6; one stage for the single-branch splits, whose stage changes
nothing), with the default widths on So2Sat patches (18 x 32 x 32): the warm rate of a
training step (forward, class-weighted cross-entropy, backward, an Adam step; dropout
and batch statistics as in training; the independent sum's per-branch losses at stage
6 as well) and of inference (evaluation mode, no autograd), on a batch of ``--batch``
random patches, in wall time and in process CPU time (all threads; other processes on a
shared machine inflate it less), and the parameter count. Configurations are timed in alternation over
``--rounds`` rounds, best of each, so that a change of the machine's load shifts all of
them alike. Writes JSON with the load average.

    python benchmarks/lcz.py --out benchmarks/results/lcz.json [--batch 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import best_cpu_time, best_time, finish, loadavg, machine

from sarheight.models import FusionNet
from sarheight.models.fusion import SPLITS, STAGES


def configurations() -> list[tuple[str, int, str]]:
    """(split, stage, sum mode) of every benchmarked network."""
    found = []
    for split, groups in SPLITS.items():
        if len(groups) == 1:
            found.append((split, 0, "dependent"))
            continue
        found += [(split, stage, "dependent") for stage in STAGES]
        found.append((split, 6, "independent"))
    return found


def setup(split: str, stage: int, sum_mode: str, batch: int):
    """The training step and the inference of one network on a batch."""
    torch.manual_seed(0)
    model = FusionNet(split, stage, sum_mode=sum_mode)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 18, 32, 32, generator=generator)
    labels = torch.randint(0, 17, (batch,), generator=generator)
    weight = torch.rand(17, generator=generator) + 0.5

    def train_step() -> None:
        model.train()
        optimiser.zero_grad(set_to_none=True)
        if sum_mode == "independent":
            loss = sum(torch.nn.functional.cross_entropy(z, labels, weight=weight) for z in model.branch_logits(x))
        else:
            loss = torch.nn.functional.cross_entropy(model(x), labels, weight=weight)
        loss.backward()
        optimiser.step()

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return model, train_step, infer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/lcz.json")
    parser.add_argument("--batch", type=int, default=64, help="patches per batch (default 64)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of alternating timings (best of each)")
    args = parser.parse_args(argv)

    load_start = loadavg()
    print(f"load average {load_start}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    best: dict[tuple[str, int, str], dict[str, float]] = {}
    for round_ in range(args.rounds):
        for key in configurations():
            _, train_step, infer = setup(*key, args.batch)
            timing = {"train_step_s": best_time(train_step, repeats=3, min_total=0.3),
                      "inference_s": best_time(infer, repeats=3, min_total=0.3),
                      "train_step_cpu_s": best_cpu_time(train_step, repeats=3),
                      "inference_cpu_s": best_cpu_time(infer, repeats=3)}
            entry = best.setdefault(key, timing)
            for name, value in timing.items():
                entry[name] = min(entry[name], value)
            print(f"round {round_ + 1} {key[0]:12s} stage {key[1]} {key[2]:11s} train {timing['train_step_s']:.4f} s "
                  f"({timing['train_step_cpu_s']:.4f} s CPU) inference {timing['inference_s']:.4f} s "
                  f"({timing['inference_cpu_s']:.4f} s CPU) per {args.batch} patches", flush=True)
    rows: list[dict[str, Any]] = []
    for (split, stage, sum_mode), timing in best.items():
        model, _, _ = setup(split, stage, sum_mode, 1)
        rows.append({"split": split, "stage": stage, "sum_mode": sum_mode,
                     "parameters": sum(p.numel() for p in model.parameters()), **timing,
                     "train_patches_per_s": args.batch / timing["train_step_s"],
                     "inference_patches_per_s": args.batch / timing["inference_s"]})
    print(f"{'split':12s} {'stage':>5s} {'sum':11s} {'parameters':>10s} {'train/s':>8s} {'infer/s':>8s}")
    for row in rows:
        print(f"{row['split']:12s} {row['stage']:5d} {row['sum_mode']:11s} {row['parameters']:10,d} "
              f"{row['train_patches_per_s']:8.0f} {row['inference_patches_per_s']:8.0f}")
    result = {"benchmark": "lcz", "machine": {**machine(), "torch": torch.__version__,
                                              "torch_threads": torch.get_num_threads()},
              "batch": args.batch, "patch": [18, 32, 32], "rounds": args.rounds, "rows": rows}
    return finish(result, args.out, load_start)


if __name__ == "__main__":
    raise SystemExit(main())
