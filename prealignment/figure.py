"""Before/after figure and table of the prealignment methods on our own data.

    python -m prealignment.figure [--out prealignment/assets/before_after.png]

For each O2-shapes class (generated here, 40 objects at random orientations) and for the real
nuclei crops, it prealigns with every method and shows the mean image: the sharper the mean,
the better the objects agree in pose. Under each mean: the residual spread (mean squared error
of the aligned images to their mean) relative to the unaligned images'. The table is printed.
"""

import argparse
import pathlib

import numpy as np
import torch

from prealignment.canonical import METHODS, prealign


def groups(n_per_class=40, size=64, seed=0):
    """``{name: images (n, 1, size, size)}``: each O2-shapes class and the nuclei crops."""
    from data.generate_nuclei import make_nuclei
    from data.generate_shapes import CLASSES, make_shapes

    images, labels, *_ = make_shapes(n_per_class * len(CLASSES), np.random.default_rng(seed), size=size)
    out = {name: images[labels == k] for k, name in enumerate(CLASSES)}
    out["nuclei (real)"] = make_nuclei(size)[0]
    return out


def spread(images):
    return float(((images - images.mean(0)) ** 2).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="prealignment/assets/before_after.png")
    args = parser.parse_args(argv)
    from analysis.plots import image_rows

    rows, titles, names = [], [], []
    print(f"| objects | {' | '.join(METHODS)} |\n|---|{'---|' * len(METHODS)}")
    for name, images in groups().items():
        x = torch.from_numpy(np.ascontiguousarray(images))
        before = spread(x)
        means, row_titles = [x[0], x[1], x.mean(0)], ["example", "example", "mean, unaligned"]
        relative = []
        for method in METHODS:
            aligned = prealign(x, method=method).images
            means.append(aligned.mean(0))
            relative.append(spread(aligned) / before)
            row_titles.append(f"{method}: {relative[-1]:.2f}")
        print(f"| {name} | {' | '.join(f'{r:.2f}' for r in relative)} |")
        rows.append(torch.stack(means).numpy())
        titles.append(row_titles)
        names.append(name)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image_rows(rows, names, titles=titles, path=args.out, size=1.3)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
