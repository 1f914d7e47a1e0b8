"""See inside an LSTM: its gates and cell states step by step, saturation, and interpretable cells.

The frameworks return h and c; nplstm's training cache already holds every gate, and
``activations`` reads them out. Layout of what it returns, for each layer and direction
(keys "l0", "l0_reverse", "l1", ...)::

    i, f, g, o   (T, B, H)   input, forget, candidate and output gates, after their nonlinearity
    c            (T, B, H)   cell state after each step
    h            (T, B, P)   hidden state (the layer's output for that direction)

in time order and in the caller's batch order; steps past a sequence's length are zero.
Karpathy, Johnson & Fei-Fei ("Visualizing and Understanding Recurrent Networks", 2015)
measure gate saturation as the fraction of activations below 0.1 or above 0.9, and find
cells that track quotes, brackets and line position; ``saturation`` and ``rank_cells`` do
the same here.
"""
import html
import json

import numpy as np

from . import engine
from .recurrent import LSTM, suffix

__all__ = ["activations", "saturation", "text_features", "rank_cells", "FEATURES", "heatmap_png", "html_page"]


def activations(lstm, cache):
    """Gates, cell and hidden states of every layer and direction, from ``lstm.forward(..., train=True)``."""
    if not isinstance(lstm, LSTM):
        raise TypeError(f"activations reads LSTM caches, got {type(lstm).__name__}")
    if not isinstance(cache, dict) or cache.get("mode") != "lstm":
        raise TypeError("cache must be the cache of LSTM.forward(..., train=True)")
    T, B = cache["shape"]
    order, batch_sizes = cache["order"], cache["batch_sizes"]
    unsort = slice(None) if order is None else np.argsort(order)
    lengths = None
    if batch_sizes is not None:                          # each row's length, in the caller's order
        lengths = np.array([int((batch_sizes > row).sum()) for row in range(B)])[unsort]
    out = {}
    for layer, directions in enumerate(cache["layers"]):
        for d, direction in enumerate(directions):
            acts = engine.activations(direction)          # gates and c (T, B, H), h (T, B, P)
            for name, a in acts.items():
                a = np.array(a[:, unsort])
                if lengths is not None:
                    a[np.arange(T)[:, None] >= lengths[None, :]] = 0
                acts[name] = a
            out[suffix(layer, d)[1:]] = {k: acts[k] for k in ("i", "f", "g", "o", "c", "h")}
    return out


def saturation(acts, low=0.1, high=0.9):
    """Per layer-direction and sigmoid gate: the fraction of activations below ``low`` and above ``high``.

    Returns {"l0": {"i": (frac_low, frac_high), "f": ..., "o": ...}, ...}; padded (zero) steps count too,
    so pass unpadded batches for exact figures.
    """
    return {key: {g: (float(np.mean(a[g] < low)), float(np.mean(a[g] > high))) for g in ("i", "f", "o")}
            for key, a in acts.items()}


# ---------------------------------------------------------------------------- interpretable cells
def _inside_quotes(text):
    out, inside = np.zeros(len(text)), False
    for k, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        out[k] = inside
    return out


def _bracket_depth(text):
    out, depth = np.zeros(len(text)), 0
    for k, ch in enumerate(text):
        depth += ch in "([{"
        out[k] = depth > 0
        depth = max(depth - (ch in ")]}"), 0)
    return out


def _line_position(text):
    out, pos = np.zeros(len(text)), 0
    for k, ch in enumerate(text):
        out[k] = pos
        pos = 0 if ch == "\n" else pos + 1
    return out


def _after_newline(text):
    return np.array([k > 0 and text[k - 1] == "\n" for k in range(len(text))], float)


FEATURES = {"inside quotes": _inside_quotes, "inside brackets": _bracket_depth,
            "position in line": _line_position, "after a newline": _after_newline}


def text_features(text):
    """The simple text features of ``FEATURES``, one value per character (after reading it)."""
    return {name: fn(text) for name, fn in FEATURES.items()}


def rank_cells(acts, text, kind="c", top=5):
    """Rank every cell of every layer-direction by |Pearson correlation| of its ``kind`` ("c" or "h")
    activation with each text feature. ``acts`` must come from a batch of one sequence: ``text``.

    Returns {feature: [(layer_key, unit, correlation), ...]} best first, ``top`` per feature.
    """
    ranking = {}
    for name, feat in text_features(text).items():
        if feat.std() == 0:                               # the text never varies it (no quotes, say)
            continue
        rows = []
        for key, a in acts.items():
            x = a[kind][:, 0, :]                           # (T, H): the one sequence
            if x.shape[0] != len(text):
                raise ValueError(f"activations cover {x.shape[0]} steps but the text has {len(text)} characters")
            xc, fc = x - x.mean(axis=0), feat - feat.mean()
            denom = np.sqrt((xc ** 2).sum(axis=0) * (fc ** 2).sum())
            corr = np.divide(fc @ xc, denom, out=np.zeros(x.shape[1]), where=denom > 0)
            rows += [(key, int(u), float(corr[u])) for u in range(x.shape[1])]
        ranking[name] = sorted(rows, key=lambda r: -abs(r[2]))[:top]
    return ranking


# ---------------------------------------------------------------------------- pictures
def heatmap_png(acts, text, path, key="l0", cells=16):
    """A PNG heatmap of the gates and cell state of ``key``'s most active cells over ``text``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ._io import atomic_write
    a = acts[key]
    tanh_c = np.tanh(a["c"])                              # what leaves the cell: bounded, unlike c
    units = np.argsort(-tanh_c[:, 0, :].std(axis=0))[:cells]   # the cells whose output moves most
    rows = [("tanh(c)", tanh_c, "RdBu_r", (-1, 1))] + [(g, a[g], "viridis", (0, 1)) for g in ("i", "f", "o")] \
        + [("g", a["g"], "RdBu_r", (-1, 1))]
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(6, 0.18 * len(text) + 2), 1.2 + 0.22 * cells * len(rows)),
                             sharex=True)
    for ax, (name, arr, cmap, (vmin, vmax)) in zip(axes, rows):
        im = ax.imshow(arr[:, 0, units].T, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_ylabel(name, rotation=0, labelpad=12)
        ax.set_yticks(range(len(units)), [str(u) for u in units], fontsize=5)
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.02)
    axes[-1].set_xticks(range(len(text)), [repr(ch)[1:-1] for ch in text], fontsize=6)
    axes[0].set_title(f"{key}: cell output tanh(c) and gates of the {len(units)} most active cells")
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def html_page(acts, text, ranking=None, kind="c"):
    """A self-contained HTML page: the text coloured character by character by a chosen cell.

    No network resources: the data and the script are inline.
    """
    cells = {f"{key} cell {u}": np.round(a[kind][:, 0, u], 4).tolist()
             for key, a in acts.items() for u in range(a[kind].shape[2])}
    first = None
    if ranking:
        best = max((r for rows in ranking.values() for r in rows[:1]), key=lambda r: abs(r[2]), default=None)
        first = best and f"{best[0]} cell {best[1]}"
    notes = "".join(f"<li>{html.escape(feat)}: " + ", ".join(f"{k} cell {u} (r = {c:+.2f})" for k, u, c in rows[:3])
                    + "</li>" for feat, rows in (ranking or {}).items())
    options = "".join(f'<option{" selected" if name == first else ""}>{html.escape(name)}</option>' for name in cells)
    chars = json.dumps(list(text))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nplstm inspect</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
#text {{ font-family: monospace; font-size: 15px; line-height: 1.6; white-space: pre-wrap; }}
#text span {{ padding: 1px 0; }}
</style></head>
<body>
<h1>Cell activations ({html.escape(kind)})</h1>
<p>Red: positive, blue: negative, each cell scaled by its largest magnitude over the text
(hover a character for the value). Cell: <select id="cell">{options}</select></p>
<div id="text"></div>
<h2>Cells that track simple features</h2><ul>{notes}</ul>
<script>
const chars = {chars};
const cells = {json.dumps(cells)};
function colour(v) {{
  const t = Math.max(-1, Math.min(1, v));
  const r = t > 0 ? 255 : Math.round(255 * (1 + t)), b = t < 0 ? 255 : Math.round(255 * (1 - t));
  const g = Math.round(255 * (1 - Math.abs(t)));
  return `rgb(${{r}},${{g}},${{b}})`;
}}
function show() {{
  const raw = cells[document.getElementById("cell").value];
  const scale = Math.max(1e-9, ...raw.map(Math.abs));      // each cell on its own scale
  const values = raw.map(v => v / scale);
  const box = document.getElementById("text");
  box.textContent = "";
  chars.forEach((ch, k) => {{
    const s = document.createElement("span");
    s.textContent = ch;
    s.style.background = colour(values[k]);
    s.title = raw[k].toFixed(3);
    box.appendChild(s);
  }});
}}
document.getElementById("cell").addEventListener("change", show);
show();
</script>
</body></html>
"""
