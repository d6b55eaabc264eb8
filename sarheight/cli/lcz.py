"""``sarheight lcz ACTION``: the Local Climate Zone fusion study on So2Sat LCZ42:
``sweep`` (train and score the grid of splits and fusion stages), ``combine`` (score the
independent sum of separately trained classifiers), and ``fit``/``validate``/``test``
(one configuration through LightningCLI, ``sarheight/configs/lcz_fusion.yaml``)."""

from __future__ import annotations

import argparse

from .options import Action, add_actions, add_quiet, run_action

NAME = "lcz"
HELP = "local climate zones from Sentinel-1 and Sentinel-2 patches (So2Sat LCZ42): the fusion study"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_actions(parser, ACTIONS)


run = run_action


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="folder of the So2Sat LCZ42 files training.h5, validation.h5, testing.h5")
    parser.add_argument("--setting", choices=("train-val-test", "80-10-10"), default="train-val-test",
                        help="train-val-test: the three files (test cities never seen in training); 80-10-10: "
                        "parts of training.h5 drawn at random (patches of the same cities in every part: "
                        "optimistic); default train-val-test")
    parser.add_argument("--batch-size", type=int, default=32, help="patches per batch (default 32)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many patches per split (quick runs)")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loading processes (default 0)")


# sweep


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data(parser)
    parser.add_argument("--out", required=True, help="folder of the runs, lcz_sweep.md, lcz_sweep.json, "
                        "lcz_sweep.png, confusion.png; a training that finished there is not run again")
    parser.add_argument("--splits", default="sar,optical,sar+optical,physical",
                        help="comma-separated splits among sar, optical, sar+optical, physical (default all)")
    parser.add_argument("--stages", default="0-6", help="fusion stages: 0-6, 3 or 0,3,6 (6: the sums; default 0-6)")
    parser.add_argument("--seeds", type=int, default=5, help="trainings per configuration (default 5)")
    parser.add_argument("--max-epochs", type=int, default=100, help="most epochs of a training (default 100)")
    parser.add_argument("--patience", type=int, default=25,
                        help="stop when validation OA has not improved for this many epochs (default 25)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto: a GPU if there is one)")
    parser.add_argument("--devices", type=int, default=1,
                        help="processes per training: GPUs, or CPU processes with --accelerator cpu; more than one "
                        "trains with DDP, each process on --batch-size patches per step (default 1)")
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def run_sweep(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight lcz sweep")
    import torch

    from ..errors import SarHeightError
    from ..studies.lcz import parse_stages, run_sweep

    if args.accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        raise SarHeightError(f"--accelerator {args.accelerator}: torch sees no CUDA device here; give cpu (or auto), "
                             "or run where the GPU is")
    if args.devices < 1:
        raise SarHeightError(f"--devices {args.devices}: give the number of processes per training, 1 or more")
    if args.devices > 1 and args.accelerator != "cpu":
        available = torch.cuda.device_count()
        if args.accelerator in ("cuda", "gpu") or available:
            if args.devices > available:
                raise SarHeightError(f"--devices {args.devices}: torch sees {available} GPU(s) here; give at most "
                                     f"{available}, or --accelerator cpu for CPU processes")
        else:
            raise SarHeightError(f"--devices {args.devices} with --accelerator {args.accelerator}: there is no GPU "
                                 "here; give --accelerator cpu to train on that many CPU processes")

    results = run_sweep(args.data, args.out, splits=[s.strip() for s in args.splits.split(",") if s.strip()],
                        stages=parse_stages(args.stages), seeds=args.seeds, setting=args.setting,
                        max_epochs=args.max_epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                        limit=args.limit, num_workers=args.num_workers, accelerator=args.accelerator,
                        devices=args.devices, progress=not args.quiet)
    if not args.quiet:
        best = max(results["rows"].values(), key=lambda row: row["mean"]["aa"])
        print(f"{len(results['rows'])} configurations x {results['seeds']} seed(s); best average accuracy "
              f"{100 * best['mean']['aa']:.2f} ± {100 * best['std']['aa']:.2f} % ({best['label']}); "
              f"table in {args.out}/lcz_sweep.md")
    return 0


# combine


def add_combine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", nargs="+", metavar="CKPT",
                        help="checkpoints of separately trained classifiers (e.g. runs/sar/seed0/best.ckpt and "
                        "runs/optical/seed0/best.ckpt of a sweep)")
    _add_data(parser)
    parser.add_argument("--seed", type=int, default=0, help="the 80-10-10 partition's seed (default 0)")
    parser.add_argument("--split", choices=("val", "test"), default="test", help="the split to score (default test)")
    parser.add_argument("--out", default=None, help="also write the scores as JSON here")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device (default cpu)")
    add_quiet(parser)


def run_combine(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight lcz combine")
    from ..data.so2sat import So2SatDataModule
    from ..studies.lcz import combine_checkpoints
    from ..studies.runs import write_json

    data = So2SatDataModule(args.data, setting=args.setting, seed=args.seed, batch_size=args.batch_size,
                            num_workers=args.num_workers, limit=args.limit)
    data.setup()
    loader = data.test_dataloader() if args.split == "test" else data.val_dataloader()
    scores = combine_checkpoints(args.ckpt, loader, accelerator=args.device)
    if args.out:
        write_json(scores, args.out)
    if not args.quiet:
        print(f"sum of {len(args.ckpt)} classifiers on the {args.split} split ({scores['samples']} patches): "
              f"OA {100 * scores['oa']:.2f} %, AA {100 * scores['aa']:.2f} %, kappa {scores['kappa']:.4f}")
    return 0


# sample


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder of the three files (made if missing)")
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of training.h5 (default 68; validation.h5 and testing.h5 get half)")
    parser.add_argument("--seed", type=int, default=0, help="the draws of classes and noise (default 0)")
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def run_sample(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight lcz sample")
    from ..data.so2sat import FILES, SAMPLE_ROWS, write_sample

    rows = SAMPLE_ROWS if args.rows is None else {"training": args.rows, "validation": max(1, args.rows // 2),
                                                  "testing": max(1, args.rows // 2)}
    root = write_sample(args.out, rows, seed=args.seed)
    if not args.quiet:
        print(f"wrote {', '.join(FILES[split] for split in rows)} in {root} ({sum(rows.values())} synthetic patches "
              "in the So2Sat LCZ42 layout: for trying the workflow, not for results)")
    return 0


# fit, validate, test


def add_lightning_arguments(parser: argparse.ArgumentParser) -> None:
    """Nothing: LightningCLI parses the arguments (``sarheight lcz fit --help`` lists them)."""


def lightning_action(subcommand: str) -> Action:
    """The action running LightningCLI's ``subcommand`` over the LCZ module and data."""

    def run_lightning(args: argparse.Namespace) -> int:
        from ..extras import require

        require(f"sarheight lcz {subcommand}")
        from ..training.cli import run_cli

        return run_cli(subcommand, args.arguments, task="lcz")

    helps = {"fit": "train one FusionNet from a YAML configuration (--config lcz_fusion; --help lists "
                    "every key)",
             "validate": "score a checkpoint on the validation split (--config, --ckpt_path)",
             "test": "score a checkpoint on the test split (--config, --ckpt_path)"}
    return Action(helps[subcommand], add_lightning_arguments, run_lightning, passthrough=True)


#: The actions of ``sarheight lcz``, in the order ``--help`` lists them.
ACTIONS = {
    "sweep": Action("train and score every input split and fusion stage over seeds (resumable); Markdown and JSON "
                    "table, accuracy-by-stage figure, confusion matrix", add_sweep_arguments, run_sweep),
    "sample": Action("write tiny synthetic files in the So2Sat LCZ42 layout, to try the workflow before the real "
                     "download (about 59 GB)", add_sample_arguments, run_sample),
    "combine": Action("score the sum of the class probabilities of separately trained classifiers (the "
                      "independent sum)", add_combine_arguments, run_combine),
    **{name: lightning_action(name) for name in ("fit", "validate", "test")},
}
