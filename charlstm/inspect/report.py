"""Writing what `charlstm inspect` recorded: a self-contained HTML page, npz or JSON.

The page needs no network: the activations travel inside it as base64 int8 (a colour
needs no more), the script that colours the text is inline; the page is filled from web/inspect.html
by charlstm.templates, escaped for each place a value lands. Each character is coloured
by the chosen unit's value after reading it, red for negative and blue for positive, as
in the classic pictures; c is shown as tanh(c) so that it fits the same scale. The exact
values are in `--format npz` / `json`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from charlstm.errors import CharlstmError
from charlstm.inspect.ablation import Ablation
from charlstm.inspect.activations import Activations, Correlated, saturation
from charlstm.inspect.match import Found
from charlstm.inspect.reach import Reach
from charlstm.templates import render_page


def display_values(acts: Activations) -> np.ndarray:
    """int8 in [-127, 127], laid out (quantity, layer, unit, time) so that one unit's
    series is contiguous for the page's script."""
    shown = []
    for quantity, values in acts.values.items():
        if quantity == "c":
            values = np.tanh(values)
        shown.append(np.clip(values, -1.0, 1.0).transpose(1, 2, 0))
    return np.round(np.stack(shown) * 127).astype(np.int8)


REPORT_FORMATS = ("html", "npz", "json")


def write_report(
    path: Path,
    acts: Activations,
    features: dict[str, np.ndarray],
    ranking: dict[str, list[Correlated]],
    fmt: str,
    title: str,
    ablation: dict[str, Ablation] | None = None,
    found: Found | None = None,
    reach: Reach | None = None,
) -> None:
    ablation = ablation or {}
    if fmt == "html":
        content = html_page(acts, ranking, title, ablation, found, reach).encode("utf-8")
    elif fmt == "json":
        plain = _plain(acts, features, ranking, ablation, found)
        plain["reach"] = reach.to_dict() if reach is not None else None
        content = json.dumps(plain).encode("utf-8")
    elif fmt == "npz":
        content = None
    else:
        raise CharlstmError(f"--format must be {', '.join(REPORT_FORMATS)} (got {fmt!r})")
    try:
        if content is None:
            with path.open("wb") as handle:
                np.savez_compressed(
                    handle,
                    text=np.array(acts.chars),
                    surprisal=acts.surprisal,
                    top=np.array(
                        [[list(pair) for pair in row] for row in acts.top], dtype=object
                    ).astype(str),
                    **acts.values,
                    **{f"feature {name}": value for name, value in features.items()},
                    **{f"ablation {name}": a.delta for name, a in ablation.items()},
                )
        else:
            path.write_bytes(content)
    except OSError as error:
        raise CharlstmError(f"cannot write {path}: {error.strerror}") from None


def _plain(acts, features, ranking, ablation, found) -> dict:
    return {
        "text": acts.chars,
        "cell": acts.cell,
        "shape": {"time": acts.shape[0], "layers": acts.shape[1], "units": acts.shape[2]},
        "values": {q: v.tolist() for q, v in acts.values.items()},
        "surprisal": acts.surprisal.tolist(),
        "top": [[list(pair) for pair in row] for row in acts.top],
        "features": {name: v.tolist() for name, v in features.items()},
        "ranking": {name: [c.__dict__ for c in found] for name, found in ranking.items()},
        "ablation": {name: a.to_dict() for name, a in ablation.items()},
        "find": found.to_dict() if found is not None else None,
        "saturation": saturation(acts),
    }


def html_page(
    acts: Activations,
    ranking: dict[str, list[Correlated]],
    title: str,
    ablation: dict[str, Ablation] | None = None,
    found: Found | None = None,
    reach: Reach | None = None,
) -> str:
    time, layers, units = acts.shape
    ablation = ablation or {}
    data = {
        "chars": acts.chars,
        "layers": layers,
        "units": units,
        "time": time,
        "quantities": list(acts.values),
        "values": base64.b64encode(display_values(acts).tobytes()).decode("ascii"),
        "surprisal": [round(float(s), 3) for s in acts.surprisal],
        "top": acts.top,
        "ablation": {
            name: {"delta": [round(float(d), 4) for d in a.delta]} for name, a in ablation.items()
        },  # fmt: skip
    }
    rows = [
        {
            "feature": feature if rank == 0 else "",
            "quantity": c.quantity,
            "layer": c.layer,
            "unit": c.unit,
            "r": f"{c.r:+.3f}",
            "change": _change(ablation.get(feature)) if rank == 0 else "",
        }
        for feature, ranked in ranking.items()
        for rank, c in enumerate(ranked)
    ]
    return render_page(
        "charlstm.inspect", "inspect.html", "inspect.js", title=title, rows=rows,
        found=_find_section(found), data=data, gates=_gate_scatters(acts),
        reach=_reach_plots(reach),
    )  # fmt: skip


SCATTER = 180  # pixels per side of a gate's scatter


def _gate_scatters(acts: Activations) -> list[dict]:
    """Per gate, one point per unit (a colour per layer): x its left-saturated fraction,
    y its right-saturated fraction, drawn as SVG by the template."""
    found = []
    for gate, fractions in saturation(acts).items():
        points = [
            {"x": round(left * SCATTER, 1), "y": round((1 - right) * SCATTER, 1), "layer": layer,
             "unit": unit}
            for layer, (lefts, rights) in enumerate(zip(fractions["left"], fractions["right"],
                                                        strict=True))
            for unit, (left, right) in enumerate(zip(lefts, rights, strict=True))
        ]  # fmt: skip
        found.append({"gate": gate, "points": points})
    return found


def _change(effect: Ablation | None) -> str:
    return f"{effect.mean_change:+.4f} nats/char" if effect is not None else ""


def _find_section(found: Found | None) -> dict | None:
    if found is None:
        return None
    return {
        "query": repr(found.query),
        "units": ", ".join(f"{layer}:{unit}" for layer, unit in found.units),
        "matches": [
            {
                "start": m.start,
                "end": m.end,
                "score": f"{m.score:.2f}",
                "before": m.before,
                "text": m.text,
                "after": m.after,
            }  # fmt: skip
            for m in found.matches
        ],
    }


PLOT_W, PLOT_H = 360, 160


def _polyline(xs: list[float], ys: list[float], top: float) -> str:
    """SVG points of a curve: x on a log2 scale over the plot's width, y from 0 to top."""
    span = max(np.log2(xs[-1]), 1.0)
    return " ".join(
        f"{np.log2(x) / span * PLOT_W:.1f},{PLOT_H - y / top * PLOT_H:.1f}"
        for x, y in zip(xs, ys, strict=True)
    )


def _reach_plots(reach: Reach | None) -> dict | None:
    """The two reach curves as SVG polylines (the loss also as a dashed full-state line)."""
    if reach is None:
        return None
    top_loss = max(max(reach.loss), reach.full_loss) * 1.05
    grads = reach.gradient
    ks = list(range(1, len(grads) + 1))
    full_y = PLOT_H - reach.full_loss / top_loss * PLOT_H
    return {
        "loss": _polyline(reach.distances, reach.loss, top_loss), "full_y": f"{full_y:.1f}",
        "gradient": _polyline(ks, grads, max(grads) * 1.05 or 1.0),
        "rows": [{"k": k, "loss": f"{v:.4f}"} for k, v in zip(reach.distances, reach.loss,
                                                              strict=True)],
        "full": f"{reach.full_loss:.4f}", "positions": reach.positions, "bound": len(grads),
        "width": PLOT_W, "height": PLOT_H,
    }  # fmt: skip
