"""`actlab-export CHECKPOINT OUT [format=lerobot|onnx] [--push-to-hub REPO_ID]`: a trained policy as a LeRobot
ACT folder (the default; actlab.export.lerobot) or as an ONNX graph with its policy.json (actlab.export.onnx),
each checked before OUT appears. `--format onnx` is the same as `format=onnx`. A refusal or failure is one
line on stderr, exit status 2, and nothing at OUT."""

from __future__ import annotations

import argparse
from pathlib import Path

from actlab.export import lerobot
from actlab.export.lerobot import one_line_errors, push_if_asked
from actlab.export.onnx import ONNX_FILE, TOLERANCE, export_onnx

FORMATS = ("lerobot", "onnx")


def format_override(value: str) -> str:
    """`format=NAME`, Hydra-style, as the third positional argument."""
    key, _, name = value.partition("=")
    if key != "format" or name not in FORMATS:
        raise argparse.ArgumentTypeError(f"expected format=lerobot or format=onnx, got {value!r}")
    return name


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actlab-export",
        description="Write an actlab policy as a LeRobot ACT folder (checked by reloading it with LeRobot) or, with "
        "format=onnx, as policy.onnx + policy.json (checked with ONNX Runtime against PyTorch).",
    )
    parser.add_argument("checkpoint", type=Path, help="policy folder (config.json + model.safetensors)")
    parser.add_argument("out", type=Path, help="new folder for the exported policy")
    parser.add_argument(
        "format_override", nargs="?", type=format_override, metavar="format=lerobot|onnx", help="default lerobot"
    )
    parser.add_argument("--format", choices=FORMATS, help="the same as format=NAME")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload OUT to this Hugging Face model repo")
    return parser


def main(argv: list[str] | None = None) -> None:
    cli = parser()
    args = cli.parse_args(argv)
    if args.format and args.format_override and args.format != args.format_override:
        cli.error(f"format={args.format_override} and --format {args.format} disagree; give one")
    chosen = args.format or args.format_override or "lerobot"
    if chosen == "lerobot":
        push = ["--push-to-hub", args.push_to_hub] if args.push_to_hub else []
        lerobot.main([str(args.checkpoint), str(args.out), *push])
        return
    with one_line_errors():
        check = export_onnx(args.checkpoint, args.out)
        size = (args.out / ONNX_FILE).stat().st_size / 1e6
        print(f"wrote {args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))} ({ONNX_FILE}: {size:.1f} MB)")
        where = (
            f"{check.dataset} dataset observations ({check.dataset_source})"
            if check.dataset
            else f"no dataset observations ({check.dataset_source})"
        )
        print(
            f"checked: ONNX Runtime (CPU) vs PyTorch fp32 chunks on {check.random} random observations and {where}: "
            f"max |action difference| {check.diff:.1e} (action units, limit {TOLERANCE:.0e})"
        )
        push_if_asked(args.out, args.push_to_hub)


if __name__ == "__main__":
    main()
