"""The profile explorer page, opened in a real browser (headless Chromium driven by Playwright)."""

import csv
import os
import pathlib
import re
import shutil

import numpy as np
import pytest

from analysis.explorer import colour_column, composite, write_explorer

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SCREENSHOTS = pathlib.Path(os.environ.get("EXPLORER_SCREENSHOT_DIR", "/tmp"))


def blob_images(n, rng, channels=1, size=24):
    """Images of one bright ellipse each, of random shape: compressible, like real crops."""
    yy, xx = np.mgrid[:size, :size] - size / 2
    a, b = rng.uniform(2, 9, (2, n))
    x = (xx[None] ** 2 / a[:, None, None] ** 2 + yy[None] ** 2 / b[:, None, None] ** 2 < 1).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) * rng.uniform(0.3, 1, (n, channels, 1, 1))


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 600
    emb = rng.normal(size=(n, 6))
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    info = write_explorer(
        path, emb, blob_images(n, rng, channels=2), ids=[f"cell-{i}" for i in range(n)],
        columns={"label": rng.integers(0, 4, n), "outlier score": rng.normal(size=n)},
        projections={"UMAP": emb[:, :2], "PCA": emb[:, 2:4]}, max_thumbnails=400,
    )  # fmt: skip
    return path, info, emb


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "playwright (pip install -r requirements.txt)"
    if not pathlib.Path(CHROMIUM).is_file():
        missing = f"Chromium at {CHROMIUM} (apt-get install chromium; scripts/setup_env.sh does it as root)"
    if missing and os.environ.get("CI"):  # CI must run the browser test, never skip it
        pytest.fail(f"the browser test needs {missing}")
    if missing:
        pytest.skip(f"the browser test needs {missing}")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, path):
    """The page opened from its file, with every request beyond that file refused and recorded
    (as ``errors``, with console errors and uncaught exceptions): it must work offline."""
    page = browser.new_page(viewport={"width": 1280, "height": 820}, accept_downloads=True)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def offline(route):
        if route.request.url == path.as_uri() or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        errors.append(f"request to {route.request.url}")
        return route.abort()

    page.route("**/*", offline)
    page.goto(path.as_uri())
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && "
        "Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('points')).glyph.sx !== undefined"
    )
    return page, errors


# screen positions of the points in the plot's canvas, and where that canvas lies on the page
POINTS_ON_SCREEN = """() => {
    const doc = Bokeh.documents[0];
    const view = Bokeh.index.get_one(doc.get_model_by_name('points'));
    const plot = Bokeh.index.get_one(doc.get_model_by_name('scatter'));
    const canvas = plot.canvas_view.el.getBoundingClientRect();
    return {sx: Array.from(view.glyph.sx), sy: Array.from(view.glyph.sy), left: canvas.left, top: canvas.top,
            webgl: view.glyph.glglyph != null, frame: view.parent.frame.bbox};
}"""


def test_the_page_renders_every_profile_with_webgl_and_no_errors(browser, page_file):
    path, info, emb = page_file
    assert info["n_points"] == 600 and info["n_thumbnails"] == 400
    assert path.stat().st_size == pytest.approx(info["size_mb"] * 1e6)
    page, errors = open_page(browser, path)
    points = page.evaluate(POINTS_ON_SCREEN)
    frame = points["frame"]
    inside = [
        frame["x0"] <= x <= frame["x1"] and frame["y0"] <= y <= frame["y1"]
        for x, y in zip(points["sx"], points["sy"], strict=True)
    ]
    assert sum(inside) == len(emb)  # every profile drawn, inside the plot
    assert points["webgl"]
    page.screenshot(path=SCREENSHOTS / "explorer_test.png")
    assert errors == []


def test_hovering_a_point_shows_its_thumbnail_and_values(browser, page_file):
    path, _, _ = page_file
    page, errors = open_page(browser, path)
    data = page.evaluate("""() => {
        const doc = Bokeh.documents[0];
        const d = doc.get_model_by_name('points').data_source.data;
        return {thumb: Array.from(d.thumb), id: d.id, uri: doc.get_model_by_name('thumbnails').data.uri};
    }""")
    points = page.evaluate(POINTS_ON_SCREEN)
    sx, sy = np.array(points["sx"]), np.array(points["sy"])
    # a point with a thumbnail and no other point within 6 px, so the tooltip is its alone
    distance = np.hypot(sx[:, None] - sx[None], sy[:, None] - sy[None]) + np.eye(len(sx)) * 1e9
    lonely = [i for i in np.argsort(-distance.min(1)) if data["thumb"][i] >= 0][0]
    assert distance[lonely].min() > 6
    page.mouse.move(points["left"] + sx[lonely], points["top"] + sy[lonely])
    tooltip = """() => {  // the hover tooltip's text and image, from inside its shadow root
        const find = (root) => {
            for (const el of root.querySelectorAll('*')) {
                const shadow = el.shadowRoot;
                if (el.classList.contains('bk-Tooltip') && shadow && shadow.textContent.includes('id'))
                    return shadow;
                const inner = el.shadowRoot && find(el.shadowRoot);
                if (inner) return inner;
            }
            return null;
        };
        const shown = find(document);
        return shown && {text: shown.textContent, src: shown.querySelector('img').getAttribute('src')};
    }"""
    page.wait_for_function(tooltip)
    shown = page.evaluate(tooltip)
    assert f"cell-{lonely}" in shown["text"]
    assert shown["src"] == data["uri"][data["thumb"][lonely]]
    assert "label" in shown["text"] and "outlier score" in shown["text"]
    assert errors == []


def test_a_box_selection_shows_the_cells_and_exports_exactly_their_ids(browser, page_file, tmp_path):
    path, _, _ = page_file
    page, errors = open_page(browser, path)
    points = page.evaluate(POINTS_ON_SCREEN)
    frame = points["frame"]
    width, height = frame["x1"] - frame["x0"], frame["y1"] - frame["y0"]
    x0, x1 = frame["x0"] + 0.3 * width, frame["x0"] + 0.6 * width
    y0, y1 = frame["y0"] + 0.25 * height, frame["y0"] + 0.7 * height
    sx, sy = np.array(points["sx"]), np.array(points["sy"])
    inside = np.flatnonzero((sx >= x0) & (sx <= x1) & (sy >= y0) & (sy <= y1))
    assert 20 < len(inside) < 580
    page.mouse.move(points["left"] + x0, points["top"] + y0)
    page.mouse.down()
    page.mouse.move(points["left"] + x1, points["top"] + y1, steps=8)
    page.mouse.up()
    with page.expect_download() as download:
        page.get_by_role("button", name="export selected ids (CSV)").click()
    saved = tmp_path / "ids.csv"
    download.value.save_as(saved)
    with open(saved) as f:
        exported = [row["id"] for row in csv.DictReader(f)]
    assert sorted(exported) == sorted(f"cell-{i}" for i in inside)
    grid = page.locator(".bk-Div img[width='48']")  # the grid of the selected cells' thumbnails
    with_thumbnails = page.evaluate(
        "(idx) => idx.filter((i) => "
        "Bokeh.documents[0].get_model_by_name('points').data_source.data.thumb[i] >= 0).length",
        inside.tolist(),
    )
    assert grid.count() == with_thumbnails > 0
    page.screenshot(path=SCREENSHOTS / "explorer_selection_test.png")
    assert errors == []


def test_search_colour_and_layout_controls(browser, page_file):
    path, _, _ = page_file
    page, errors = open_page(browser, path)
    page.get_by_placeholder("id, then Enter").fill("cell-123")
    page.keyboard.press("Enter")
    selected = "() => Bokeh.documents[0].get_model_by_name('points').data_source.selected.indices"
    page.wait_for_function(f"() => ({selected})().length === 1")
    assert page.evaluate(selected) == [123]
    page.get_by_placeholder("id, then Enter").fill("no-such-cell")
    page.keyboard.press("Enter")
    page.get_by_text("no object with id no-such-cell").wait_for()
    data = "Bokeh.documents[0].get_model_by_name('points').data_source.data"
    page.locator("select").first.select_option("outlier score")
    page.wait_for_function(f"() => {data}.colour[5] === {data}['colour_outlier score'][5]")
    page.locator("select").nth(1).select_option("PCA")
    page.wait_for_function(f"() => {data}.x[7] === {data}.PCA_x[7]")
    assert errors == []


def test_composites_and_bad_input():
    one = composite(np.linspace(0, 1, 2 * 16).reshape(2, 1, 4, 4))
    assert one.shape == (2, 4, 4, 3) and (one[..., 0] == one[..., 1]).all()  # grey
    two = composite(np.stack([np.ones((4, 4)), np.zeros((4, 4))])[None].repeat(2, 0) * [[[[1]], [[0]]]])
    assert (two[..., 1] >= two[..., 0]).all()  # channel 0 is green
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"ids must hold one value per profile \(10\)"):
        write_explorer("/tmp/never.html", emb, ids=np.arange(9), projections={"UMAP": emb[:, :2]})
    with pytest.raises(ValueError, match=r"columns\['label'\] must hold one value per profile"):
        write_explorer(
            "/tmp/never.html", emb, columns={"label": np.arange(11)}, projections={"UMAP": emb[:, :2]}
        )
    with pytest.raises(ValueError, match=r"projections\['UMAP'\] must have shape \(10, 2\)"):
        write_explorer("/tmp/never.html", emb, projections={"UMAP": emb})
    with pytest.raises(ValueError, match=r"images must have shape \(10, c, h, w\)"):
        write_explorer("/tmp/never.html", emb, images=np.zeros((10, 8, 8)), projections={"UMAP": emb[:, :2]})
    with pytest.raises(ValueError, match="images hold NaN or Inf"):
        write_explorer(
            "/tmp/never.html", emb, images=np.full((10, 1, 8, 8), np.nan), projections={"UMAP": emb[:, :2]}
        )
    assert not pathlib.Path("/tmp/never.html").exists()


def test_thumbnails_are_capped_to_a_seeded_sample(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(300, 3))
    images = blob_images(300, rng)
    first = write_explorer(
        tmp_path / "a.html", emb, images, projections={"UMAP": emb[:, :2]}, max_thumbnails=50
    )
    write_explorer(tmp_path / "b.html", emb, images, projections={"UMAP": emb[:, :2]}, max_thumbnails=50)
    assert first["n_thumbnails"] == 50
    write_explorer(tmp_path / "none.html", emb, images, projections={"UMAP": emb[:, :2]}, max_thumbnails=0)
    pngs = {
        name: (tmp_path / name).read_text().count("data:image/png;base64,")
        for name in ("a.html", "none.html")
    }
    assert pngs["a.html"] - pngs["none.html"] == 50  # each stored once (bokeh's own icons aside)

    def thumbnails(name):
        return set(re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", (tmp_path / name).read_text()))

    write_explorer(
        tmp_path / "c.html", emb, images, projections={"UMAP": emb[:, :2]}, max_thumbnails=50, seed=1
    )
    assert thumbnails("a.html") == thumbnails("b.html") != thumbnails("c.html")  # the seed draws the sample


def test_columns_are_coloured_as_categories_or_on_a_scale():
    palette, scale = [f"#0000{i:02x}" for i in range(20)], ["#000000", "#888888", "#ffffff"]
    labels, legend = colour_column(np.array([3, 1, 3, 3, 2]), palette, scale)
    assert labels == [palette[0], palette[1], palette[0], palette[0], palette[2]]  # largest first
    assert legend.index("3") < legend.index("1")
    areas = np.arange(100, 400, 3)  # 100 distinct integers: a quantity, not classes
    colours, legend = colour_column(areas, palette, scale)
    assert colours[0] == "#000000" and colours[-1] == "#ffffff" and "(dark) to" in legend
    many, legend = colour_column(np.array([f"well {i}" for i in range(25)] * 2), palette, scale)
    assert many.count("#bbbbbb") == 10 and "+5 more (grey)" in legend
    scores, _ = colour_column(np.array([0.1, np.nan, 0.5] + list(np.linspace(0, 1, 30))), palette, scale)
    assert scores[1] == "#bbbbbb"  # not finite
