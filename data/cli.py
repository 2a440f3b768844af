"""Command-line options that the demo dataset generators share."""

import argparse


def image_size(text):
    """argparse type: an even image size of at least 16 pixels."""
    size = int(text)
    if size % 2 or size < 16:
        raise argparse.ArgumentTypeError(f"must be even and at least 16, got {size}")
    return size


def add_output_arguments(parser, default_out):
    """The options every generator shares: --seed, --out and --overwrite."""
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    parser.add_argument("--out", default=str(default_out), help=f"output directory (default {default_out})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
