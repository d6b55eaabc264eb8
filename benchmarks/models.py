"""Benchmark of the terrain-height models on the CPU: training step, inference, memory.

For each of the four variants (U-Net, +ECA, +LSK, ASK-UNet) at base_channels=32,
depth=4 with 4 input channels: the warm time of a training step (forward, backward and
an Adam step on a batch of 4 tiles of 256 x 256), the inference rate in km^2/s (the
same batch, evaluation mode, no autograd; 10 m cells: a 256^2 tile is 6.5536 km^2), the
parameter count, and the peak memory of a training step and of an inference: the rise
of the process's peak resident set size (``VmHWM``, see :func:`peak_rss_kib`) over a
step, in a fresh subprocess per variant and mode, after the model, the optimiser and the batch are
allocated (so it counts activations, gradients, Adam's moments and allocator overhead,
not the weights or the interpreter). Also the ratios ASK-UNet / U-Net, the same
timings with the activations in the default NCHW layout instead of the models' channels
last, and (``--profile``) the operators where ASK-UNet's extra training time goes.

Variants are timed in alternation over ``--rounds`` rounds, best of each, so that a
change of the machine's load shifts all of them alike, in wall time and in process CPU
time (less sensitive to other processes on a shared machine). Writes JSON with the load
average.

    python benchmarks/models.py --out benchmarks/results/models.json [--rounds 2] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from typing import Any

import torch
from _common import REPO, best_cpu_time, best_time, finish, loadavg, machine

from sarheight.models import build

VARIANTS = ("unet", "unet_eca", "unet_lsk", "ask_unet")
TILE_KM2 = 256 * 256 * 10.0 * 10.0 / 1e6  # a 256^2 tile of 10 m cells: 6.5536 km^2


def setup(name: str, args: argparse.Namespace, memory_format: torch.memory_format = torch.channels_last):
    """The model, its Adam optimiser and a batch, and the training and inference steps."""
    torch.manual_seed(0)
    model = build(name, in_channels=args.in_channels, base_channels=args.base_channels, depth=args.depth)
    model.memory_format = memory_format
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, args.in_channels, args.size, args.size, generator=generator)
    target = torch.randn(args.batch, 1, args.size, args.size, generator=generator)

    def train_step() -> None:
        model.train()
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), target).backward()
        optimiser.step()

    def infer() -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    return model, train_step, infer


def peak_rss_kib() -> int:
    """The process's peak resident set size (KiB): ``VmHWM`` of ``/proc/self/status``, else
    ``ru_maxrss``. On Linux ``ru_maxrss`` keeps the high-water mark of the image before
    ``exec``, i.e. of the parent forked into the child, so a child of a large process would
    see no rise; ``VmHWM`` belongs to the child's own address space."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS


def memory_child(name: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Run in a fresh process: the rise of the peak RSS (MiB) over two steps of ``mode``."""
    _, train_step, infer = setup(name, args)
    step = train_step if mode == "train" else infer
    before = peak_rss_kib()
    step()
    step()  # the second training step allocates nothing new (Adam's moments exist): the peak stays
    after = peak_rss_kib()
    return {"baseline_mib": before / 1024, "peak_mib": after / 1024, "peak_rise_mib": (after - before) / 1024}


def peak_memory(name: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--memory-child", name, mode, "--batch", str(args.batch),
               "--size", str(args.size), "--in-channels", str(args.in_channels),
               "--base-channels", str(args.base_channels), "--depth", str(args.depth)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_extra_time(args: argparse.Namespace, top: int = 12) -> dict[str, Any]:
    """Self CPU time (ms) per operator and input shape of one training step of ASK-UNet and
    of U-Net: the operators where the difference goes, largest first."""
    from torch.profiler import ProfilerActivity, profile

    per_model = {}
    for name in ("unet", "ask_unet"):
        _, train_step, _ = setup(name, args)
        train_step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            train_step()
        per_model[name] = {(e.key, str(e.input_shapes)): e.self_cpu_time_total / 1e3
                           for e in prof.key_averages(group_by_input_shape=True)}
    keys = set(per_model["unet"]) | set(per_model["ask_unet"])
    extra = sorted(((per_model["ask_unet"].get(k, 0.0) - per_model["unet"].get(k, 0.0), k) for k in keys),
                   reverse=True)
    by_operator: dict[str, float] = {}
    for difference, (op, _) in extra:
        by_operator[op] = by_operator.get(op, 0.0) + difference
    return {
        "total_ms": {name: sum(times.values()) for name, times in per_model.items()},
        "extra_by_operator_ms": dict(sorted(by_operator.items(), key=lambda kv: -kv[1])[:top]),
        "extra_by_operator_and_shape_ms": [{"operator": op, "input_shapes": shapes, "extra_ms": d}
                                           for d, (op, shapes) in extra[:top]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/models.json")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--in-channels", type=int, default=4)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of alternating timings (best of each)")
    parser.add_argument("--no-nchw", action="store_true", help="skip the timings in the NCHW layout")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile where ASK-UNet's extra time goes")
    parser.add_argument("--memory-child", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child, args)))
        return 0

    load_start = loadavg()
    print(f"load average {load_start}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    layouts = {"channels_last": torch.channels_last}
    if not args.no_nchw:
        layouts["nchw"] = torch.contiguous_format
    tile_km2 = TILE_KM2 * (args.size / 256) ** 2
    best: dict[tuple[str, str], dict[str, float]] = {}
    for round_ in range(args.rounds):
        for layout, memory_format in layouts.items():
            for name in VARIANTS:
                _, train_step, infer = setup(name, args, memory_format)
                timing = {"train_step_s": best_time(train_step, repeats=2, min_total=0.0),
                          "inference_s": best_time(infer, repeats=3),
                          "train_step_cpu_s": best_cpu_time(train_step, repeats=2),
                          "inference_cpu_s": best_cpu_time(infer, repeats=3)}
                entry = best.setdefault((layout, name), timing)
                for key, value in timing.items():
                    entry[key] = min(entry[key], value)
                print(f"round {round_ + 1} {layout:13s} {name:9s} train step {timing['train_step_s']:6.3f} s "
                      f"({timing['train_step_cpu_s']:6.3f} s CPU)  inference {timing['inference_s']:6.3f} s "
                      f"({timing['inference_cpu_s']:6.3f} s CPU)", flush=True)
    rows = []
    for name in VARIANTS:
        model, _, _ = setup(name, args)
        row: dict[str, Any] = {"variant": name, "parameters": sum(p.numel() for p in model.parameters())}
        for layout in layouts:
            timing = best[(layout, name)]
            suffix = "" if layout == "channels_last" else f"_{layout}"
            for key, value in timing.items():
                row[f"{key}{suffix}"] = value
            row[f"inference_km2_per_s{suffix}"] = args.batch * tile_km2 / timing["inference_s"]
        if not args.no_memory:
            row["train_peak_rise_mib"] = peak_memory(name, "train", args)["peak_rise_mib"]
            row["inference_peak_rise_mib"] = peak_memory(name, "infer", args)["peak_rise_mib"]
        rows.append(row)
        print(f"{name:9s} {row['parameters']:>10,} parameters  train step {row['train_step_s']:.3f} s  "
              f"{row['inference_km2_per_s']:.1f} km2/s"
              + ("" if args.no_memory else f"  peak +{row['train_peak_rise_mib']:.0f} MiB training, "
                 f"+{row['inference_peak_rise_mib']:.0f} MiB inference"), flush=True)
    by_name = {row["variant"]: row for row in rows}
    ratios = {}
    for layout in layouts:
        suffix = "" if layout == "channels_last" else f"_{layout}"
        ratios[layout] = {key: by_name["ask_unet"][f"{key}{suffix}"] / by_name["unet"][f"{key}{suffix}"]
                          for key in ("train_step_s", "inference_s", "train_step_cpu_s", "inference_cpu_s")}
        print(f"ASK-UNet / U-Net ({layout}): training step {ratios[layout]['train_step_s']:.2f}x "
              f"({ratios[layout]['train_step_cpu_s']:.2f}x in CPU time), inference "
              f"{ratios[layout]['inference_s']:.2f}x "
              f"({ratios[layout]['inference_cpu_s']:.2f}x in CPU time); target <= 1.3x")
    if "nchw" in layouts:
        for name in VARIANTS:
            row = by_name[name]
            row["channels_last_speedup_train"] = row["train_step_s_nchw"] / row["train_step_s"]
            row["channels_last_speedup_inference"] = row["inference_s_nchw"] / row["inference_s"]
    result: dict[str, Any] = {
        "benchmark": "models", "machine": {**machine(), "torch": torch.__version__,
                                           "torch_threads": torch.get_num_threads()},
        "configuration": {"batch": args.batch, "size": args.size, "in_channels": args.in_channels,
                          "base_channels": args.base_channels, "depth": args.depth, "cell_m": 10.0,
                          "optimiser": "Adam", "memory": "rise of the peak RSS (VmHWM) over a step, fresh subprocess"},
        "results": rows, "ratio_ask_unet_to_unet": ratios,
    }
    if args.profile:
        result["profile_train_step"] = profile_extra_time(args)
        print("ASK-UNet's extra self CPU time by operator (ms): "
              + ", ".join(f"{op} {ms:.0f}" for op, ms in result["profile_train_step"]["extra_by_operator_ms"].items()))
    return finish(result, args.out, load_start)


if __name__ == "__main__":
    sys.exit(main())
