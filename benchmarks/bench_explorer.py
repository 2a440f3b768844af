"""Size and responsiveness of the profile explorer page: bokeh (what ships) against plotly.

    python benchmarks/bench_explorer.py [--sizes 10000 100000] [--chromium /usr/bin/chromium]

For each number of profiles: random 16-D embeddings laid out by their first two coordinates,
a 10-class label and a continuous score, and thumbnails of one-ellipse images (24 px) for up to
20,000 of them. It writes the bokeh page with ``analysis.explorer.write_explorer`` and, with
plotly (``pip install plotly``; skipped without it), the nearest plotly equivalent: a WebGL
scatter (``Scattergl``) coloured by label, with the same thumbnails inlined as a JavaScript array
(plotly's hover shows no images without such code). Then headless Chromium (Playwright) opens
each page from its file and reports the time until the points are drawn, and the time to
recolour all points and to select half of them (until two animation frames have passed).
Chromium draws WebGL in software here (no GPU), so the times are upper bounds.
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.explorer import composite, png_data_uris, write_explorer  # noqa: E402

TWO_FRAMES = "new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def ellipses(n, rng, size=24):
    yy, xx = np.mgrid[:size, :size] - size / 2
    a, b = rng.uniform(2, 9, (2, n))
    return (xx[None] ** 2 / a[:, None, None] ** 2 + yy[None] ** 2 / b[:, None, None] ** 2 < 1)[:, None] * 1.0


def plotly_page(path, points, labels, uris):
    import plotly.graph_objects as go

    figure = go.Figure(go.Scattergl(
        x=points[:, 0], y=points[:, 1], mode="markers", marker={"color": labels, "size": 4},
        customdata=np.arange(len(points)),
    ))  # fmt: skip
    script = f"window.thumbnails = {json.dumps(uris)};"
    path.write_text(figure.to_html(include_plotlyjs=True, full_html=True, post_script=script, div_id="plot"))


def measure(browser, path, kind, n):
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    start = time.perf_counter()
    page.goto(path.as_uri())
    if kind == "bokeh":
        page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length && "
            "Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('points')).glyph.sx !== undefined"
        )
    else:
        page.wait_for_function("() => document.getElementById('plot')._fullData !== undefined")
    page.evaluate(f"() => {TWO_FRAMES}")
    load = time.perf_counter() - start
    if kind == "bokeh":
        source = "Bokeh.documents[0].get_model_by_name('points').data_source"
        recolour = f"() => {{ const s = {source}; s.data.colour = s.data['colour_score']; s.change.emit(); }}"
        select = f"() => {{ {source}.selected.indices = [...Array({n // 2}).keys()]; }}"
    else:
        colours = f"Array.from({{length: {n}}}, (_, i) => i % 7)"
        recolour = f"() => Plotly.restyle('plot', {{'marker.color': [{colours}]}})"
        select = f"() => Plotly.restyle('plot', {{selectedpoints: [[...Array({n // 2}).keys()]]}})"
    times = []
    for action in (recolour, select):
        times.append(page.evaluate(f"async () => {{ const t = performance.now(); await ({action})(); "
                                   f"await {TWO_FRAMES}; return performance.now() - t; }}"))  # fmt: skip
    page.close()
    return load, times[0] / 1000, times[1] / 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    try:
        import plotly  # noqa: F401

        kinds = ("bokeh", "plotly")
    except ImportError:
        print("plotly is not installed: bokeh only")
        kinds = ("bokeh",)
    rng = np.random.default_rng(0)
    columns = ["profiles", "library", "file (MB)", "write (s)", "open until drawn (s)", "recolour (s)"]
    print("| " + " | ".join([*columns, "select half (s)"]) + " |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for n in args.sizes:
            emb = rng.normal(size=(n, 16))
            labels, score = rng.integers(0, 10, n), rng.normal(size=n)
            images = ellipses(n, rng)
            for kind in kinds:
                path = pathlib.Path(tmp) / f"{kind}_{n}.html"
                start = time.perf_counter()
                if kind == "bokeh":
                    write_explorer(path, emb, images, columns={"label": labels, "score": score},
                                   projections={"UMAP": emb[:, :2]})  # fmt: skip
                else:
                    sample = np.sort(rng.choice(n, min(n, 20_000), replace=False))
                    plotly_page(path, emb[:, :2], labels, png_data_uris(composite(images[sample]), 48))
                write = time.perf_counter() - start
                load, recolour, select = measure(browser, path, kind, n)
                size = path.stat().st_size / 1e6
                figures = f"{size:.1f} | {write:.1f} | {load:.2f} | {recolour:.3f} | {select:.3f}"
                print(f"| {n:,} | {kind} | {figures} |", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
