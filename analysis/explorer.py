"""A self-contained interactive page to explore profiles with their cells' images (bokeh).

:func:`write_explorer` writes one HTML file that opens offline in a browser: bokeh's JavaScript,
the data and the thumbnails are inlined. It shows a UMAP (or PCA) scatter of the embeddings,
drawn with WebGL; a selector colours the points by any column (class label, cluster, outlier
score, metadata); hovering a point shows its thumbnail and its values; a box or lasso selection
shows the selected cells as an image grid beside the plot, and a button exports their ids as
CSV; a search box finds an object by id. Bokeh rather than plotly (BENCHMARKS.md, "Profile
explorer"): its page is smaller at 10,000 points (the same size at 100,000) and opens first, and
its widgets, hover templates with images and JavaScript callbacks are built in, where plotly would
need hand-written JavaScript; plotly redraws 100,000 points faster.

Thumbnails are small PNGs stored once each, for at most ``max_thumbnails`` cells (a random
sample with ``seed``, documented on the page); the other points show their values without an
image. Multi-channel images are shown as a composite: one channel grey; two green and magenta;
three or more red, green and blue from the first three.
"""

import base64
import html
import io
import pathlib

import numpy as np
from PIL import Image

from analysis.checks import as_embeddings

MAX_CATEGORIES = 20  # coloured categories of a column; the others are grey
MAX_INTEGER_CATEGORIES = 50  # an integer column with more distinct values is a continuous one
TRANSPARENT_PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def composite(images):
    """RGB uint8 thumbnails ``(n, h, w, 3)`` of images ``(n, c, h, w)``, each channel stretched to its
    0.5-99.5 percentiles over all of them."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, c, h, w), got {images.shape}")
    channels = images[:, :3]
    lo = np.percentile(channels, 0.5, axis=(0, 2, 3), keepdims=True)
    hi = np.percentile(channels, 99.5, axis=(0, 2, 3), keepdims=True)
    scaled = np.clip((channels - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    if scaled.shape[1] == 1:
        rgb = np.repeat(scaled, 3, axis=1)
    elif scaled.shape[1] == 2:  # green and magenta
        green, magenta = scaled[:, 0], scaled[:, 1]
        rgb = np.stack([magenta, green, magenta], axis=1)
    else:
        rgb = scaled
    return (rgb.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def png_data_uris(thumbnails, size):
    """``data:`` URIs of PNG files of RGB thumbnails, resized to at most ``size`` pixels a side."""
    uris = []
    for rgb in thumbnails:
        image = Image.fromarray(rgb)
        if max(image.size) > size:
            image = image.resize((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        uris.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return uris


def colour_column(values, palette_categories, palette_continuous):
    """Hex colours of one column and the legend's HTML: categories (at most 20, the rest grey) or
    a continuous scale between the 2nd and 98th percentiles."""
    values = np.asarray(values)
    distinct = len(np.unique(values))
    if values.dtype.kind in "iu":  # class labels and cluster ids, unless many (areas, counts)
        categorical = distinct <= MAX_INTEGER_CATEGORIES
    else:
        categorical = values.dtype.kind not in "f" or distinct <= MAX_CATEGORIES
    if categorical:
        names, codes = np.unique(values.astype(str), return_inverse=True)
        order = np.argsort(-np.bincount(codes))  # the largest categories get the colours
        colours = np.full(len(names), "#bbbbbb", dtype=object)
        colours[order[:MAX_CATEGORIES]] = palette_categories[: min(len(names), MAX_CATEGORIES)]
        shown = [
            f'<span style="color:{colours[i]}">&#9679;</span> {html.escape(names[i])}'
            for i in order[:MAX_CATEGORIES]
        ]
        more = len(names) - MAX_CATEGORIES
        more = f"<br>+{more} more (grey)" if more > 0 else ""
        return colours[codes].tolist(), "<br>".join(shown) + more
    finite = np.isfinite(values)
    lo, hi = np.percentile(values[finite], [2, 98]) if finite.any() else (0.0, 1.0)
    position = np.clip((np.nan_to_num(values, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    colours = np.asarray(palette_continuous, dtype=object)[
        (position * (len(palette_continuous) - 1)).round().astype(int)
    ]
    colours[~finite] = "#bbbbbb"
    legend = f"{lo:.3g} (dark) to {hi:.3g} (yellow); grey: not finite"
    return colours.tolist(), legend


def check_length(values, n, name):
    """``values`` as an array of length ``n``, or a ValueError naming ``name``."""
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"{name} must hold one value per profile ({n}), got shape {values.shape}")
    return values


def display_values(values):
    """Values as short strings for the hover panel."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return [f"{v:.4g}" for v in values]
    return values.astype(str).tolist()


def write_explorer(
    path,
    embeddings,
    images=None,
    ids=None,
    columns=None,
    projections=None,
    max_thumbnails=20_000,
    thumbnail_size=48,
    seed=0,
    title="Profile explorer",
):
    """Write a self-contained interactive HTML page of profiles and their images.

    Parameters
    ----------
    path : str or Path
        The ``.html`` file to write (written whole, then renamed into place).
    embeddings : array, shape (n, d)
        The profiles; their UMAP and PCA are computed when ``projections`` is None.
    images : array, shape (n, c, h, w), optional
        The cells' images (any range: each channel is stretched to its percentiles); None: no
        thumbnails.
    ids : array of length n, optional
        Each object's id (shown, searched and exported); default 0..n-1.
    columns : dict of str to array of length n, optional
        Values to colour by and show on hover: labels, clusters, outlier scores, metadata.
        Text and boolean columns, integers with at most 50 distinct values and other numbers
        with at most 20 are categories (the 20 largest coloured); other numbers a continuous
        scale.
    projections : dict of str to array (n, 2), optional
        The 2-D layouts to choose from (the first is shown first); default UMAP and PCA.
    max_thumbnails : int
        Thumbnails are stored for at most this many cells, a random sample (``seed``) when there
        are more: at 48 px, about 1-3 kB each, so 20,000 take 20-60 MB of the page.
    thumbnail_size : int
        Largest side of a thumbnail in pixels (larger images are downsampled).
    seed : int
        Seed of the thumbnail sample and of the UMAP.
    title : str

    Returns
    -------
    dict
        ``path``, ``size_mb`` (of the file), ``n_points``, ``n_thumbnails``.
    """
    from bokeh.embed import file_html
    from bokeh.layouts import column, row
    from bokeh.models import (
        Button,
        ColumnDataSource,
        CustomJS,
        CustomJSHover,
        Div,
        HoverTool,
        Select,
        TextInput,
    )
    from bokeh.palettes import Category20_20, Viridis256
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    from analysis import projection
    from data.io import atomic_write

    x = as_embeddings(embeddings)
    n = len(x)
    ids = np.arange(n) if ids is None else check_length(ids, n, "ids")
    columns = {
        name: check_length(values, n, f"columns[{name!r}]") for name, values in (columns or {}).items()
    }
    if projections is None:
        projections = {"UMAP": projection.umap(x, seed=seed), "PCA": projection.pca(x)}
    for name, points in projections.items():
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (n, 2):
            raise ValueError(f"projections[{name!r}] must have shape ({n}, 2), got {points.shape}")
    if max_thumbnails < 0:
        raise ValueError(f"max_thumbnails must be >= 0, got {max_thumbnails}")

    uris, thumb_index = [], np.full(n, -1, dtype=np.int32)
    if images is not None and max_thumbnails > 0:
        images = np.asarray(images)
        if images.ndim != 4 or len(images) != n:
            raise ValueError(f"images must have shape ({n}, c, h, w), got {images.shape}")
        if not np.isfinite(images).all():
            raise ValueError("images hold NaN or Inf")
        rng = np.random.default_rng(seed)
        sample = (
            np.arange(n) if n <= max_thumbnails else np.sort(rng.choice(n, max_thumbnails, replace=False))
        )
        uris = png_data_uris(composite(images[sample]), thumbnail_size)
        thumb_index[sample] = np.arange(len(sample))

    first = next(iter(projections))
    data = {"id": [str(i) for i in ids], "thumb": thumb_index}
    for name, points in projections.items():
        points = np.asarray(points, dtype=np.float32)  # half the bytes of float64, ample for a plot
        data[f"{name}_x"], data[f"{name}_y"] = points[:, 0], points[:, 1]
    data["x"], data["y"] = data[f"{first}_x"], data[f"{first}_y"]
    legends = {}
    for name, values in columns.items():
        categories = Category20_20[::2] + Category20_20[1::2]  # its 10 darker tones first
        data[f"colour_{name}"], legends[name] = colour_column(values, categories, Viridis256)
        data[f"value_{name}"] = display_values(values)
    colour_names = list(columns)
    data["colour"] = data[f"colour_{colour_names[0]}"] if colour_names else ["#1f77b4"] * n
    source = ColumnDataSource(data)
    thumbs = ColumnDataSource({"uri": uris}, name="thumbnails")  # a model: stored once, shared

    plot = figure(
        title=title, width=760, height=680, output_backend="webgl", name="scatter",
        tools="pan,wheel_zoom,box_select,lasso_select,reset,save", active_drag="box_select",
    )  # fmt: skip
    plot.scatter("x", "y", source=source, color="colour", size=4, alpha=0.7, name="points")
    thumb_formatter = CustomJSHover(
        args={"thumbs": thumbs, "none": TRANSPARENT_PIXEL},
        code="return value >= 0 ? thumbs.data.uri[value] : none",
    )
    rows = "".join(f"<div><b>{html.escape(c)}</b>: @value_{c}</div>" for c in columns)
    plot.add_tools(
        HoverTool(
            renderers=plot.select(name="points"),
            tooltips=(
                '<div style="max-width:220px"><img src="@thumb{custom}" width="96" height="96" '
                'style="image-rendering:pixelated"><div><b>id</b>: @id</div>' + rows + "</div>"
            ),
            formatters={"@thumb": thumb_formatter},
        )
    )
    sampled = f"{len(uris):,} of {n:,} cells" + (f" (a random sample, seed {seed})" if len(uris) < n else "")
    status = Div(text=f"{n:,} profiles; thumbnails for {sampled}. Select with the box or lasso.", width=420)
    legend = Div(text=legends.get(colour_names[0], "") if colour_names else "", width=420)
    grid = Div(text="", width=420, height=420, styles={"overflow-y": "auto"}, name="grid")
    colour_select = Select(
        title="colour by", value=colour_names[0] if colour_names else "", options=colour_names
    )
    colour_select.js_on_change(
        "value",
        CustomJS(
            args={"source": source, "legend": legend, "legends": legends},
            code="""
            source.data.colour = source.data['colour_' + cb_obj.value];
            legend.text = legends[cb_obj.value];
            source.change.emit();
            """,
        ),
    )
    layout_select = Select(title="layout", value=first, options=list(projections))
    layout_select.js_on_change(
        "value",
        CustomJS(
            args={"source": source, "plot": plot},
            code="""
            const d = source.data;
            d.x = d[cb_obj.value + '_x'];
            d.y = d[cb_obj.value + '_y'];
            source.change.emit();
            plot.reset.emit();
            """,
        ),
    )
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"source": source, "grid": grid, "thumbs": thumbs, "status": status, "cap": 400},
            code="""
            const chosen = source.selected.indices;
            const ids = source.data.id, thumb = source.data.thumb;
            const parts = [];
            for (const i of chosen) {
                if (parts.length >= cap) break;
                if (thumb[i] >= 0)
                    parts.push('<img src="' + thumbs.data.uri[thumb[i]] + '" title="' + ids[i] +
                               '" width="48" height="48" style="image-rendering:pixelated;margin:1px">');
            }
            grid.text = parts.join('');
            status.text = chosen.length + ' selected (' + parts.length + ' shown with thumbnails)';
            """,
        ),
    )
    export = Button(label="export selected ids (CSV)", name="export")
    export.js_on_event(
        "button_click",
        CustomJS(
            args={"source": source},
            code="""
            const ids = source.data.id;
            const lines = ['id'].concat(source.selected.indices.map((i) => ids[i]));
            const blob = new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'});
            const link = document.createElement('a');
            link.href = URL.createObjectURL(blob);
            link.download = 'selected_ids.csv';
            document.body.appendChild(link);
            link.click();
            link.remove();
            """,
        ),
    )
    search = TextInput(title="find an object by id", placeholder="id, then Enter")
    search.js_on_change(
        "value",
        CustomJS(
            args={"source": source, "status": status, "plot": plot},
            code="""
            const i = source.data.id.indexOf(cb_obj.value.trim());
            if (i < 0) { status.text = 'no object with id ' + cb_obj.value; return; }
            source.selected.indices = [i];
            const x = source.data.x[i], y = source.data.y[i];
            const w = (plot.x_range.end - plot.x_range.start) / 8;
            const h = (plot.y_range.end - plot.y_range.start) / 8;
            plot.x_range.setv({start: x - w, end: x + w});
            plot.y_range.setv({start: y - h, end: y + h});
            """,
        ),
    )
    controls = column(row(colour_select, layout_select), search, export, status, legend, grid)
    page = file_html(row(plot, controls), INLINE, title)
    path = pathlib.Path(path)
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(page, encoding="utf-8"))
    info = {"path": path, "size_mb": path.stat().st_size / 1e6, "n_points": n, "n_thumbnails": len(uris)}
    print(f"wrote {path}: {info['size_mb']:.1f} MB, {n:,} points, {len(uris):,} thumbnails")
    return info
