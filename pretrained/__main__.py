"""Re-measure, publish or list the pretrained models (see ``pretrained/__init__.py``).

Usage::

    python -m pretrained measure NAME [--data DATA_DIR]
    python -m pretrained publish RUN_DIR NAME --commit COMMIT --train-minutes MIN [--data DIR] [--note TEXT]
    python -m pretrained table
"""

import argparse
import sys

import pretrained


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pretrained", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p_measure = sub.add_parser("measure", help="re-measure a shipped model's held-out scores")
    p_measure.add_argument("name", choices=list(pretrained.RECIPES))
    p_publish = sub.add_parser("publish", help="ship a finished run as pretrained/NAME")
    p_publish.add_argument("run_dir")
    p_publish.add_argument("name", choices=list(pretrained.RECIPES))
    p_publish.add_argument("--commit", required=True, help="the commit the run was trained at")
    p_publish.add_argument("--train-minutes", type=float, required=True, help="wall-clock training time")
    p_publish.add_argument("--note", help="for the card, e.g. other jobs that shared the machine")
    sub.add_parser("table", help="print the README's table of shipped models")
    for p in (p_measure, p_publish):
        p.add_argument("--data", help="held-out dataset directory (default: rebuilt in a temporary folder)")
    args = parser.parse_args(argv)

    if args.what == "table":
        print(pretrained.table(), end="")
        return 0
    if args.what == "publish":
        info = pretrained.publish(
            args.run_dir, args.name, args.commit, args.train_minutes, args.data, args.note
        )
        print(f"wrote pretrained/{args.name}.pt ({info['size_mb']} MB), .pt.sha256, .json and .md")
        print(info["scores"])
        return 0
    scores = pretrained.measure(args.name, args.data)
    card = pretrained.card(args.name)["scores"]
    for key in ("knn", "purity", "sensitivity"):
        print(f"{key:12s} card {card[key]:.3f}   now {scores[key]:.3f}")
    moved = pretrained.drift(card, scores)
    if moved:
        print(f"drift beyond {pretrained.tolerance(scores['n_test']):.3f}: {sorted(moved)}")
        return 1
    print(f"all scores within {pretrained.tolerance(scores['n_test']):.3f} of the card")
    return 0


if __name__ == "__main__":
    sys.exit(main())
