"""Writing what `charlstm inspect` recorded: a self-contained HTML page, npz or JSON.

The page needs no network: the activations travel inside it as base64 int8 (a colour
needs no more), the script that colours the text is inline. Each character is coloured
by the chosen unit's value after reading it, red for negative and blue for positive, as
in the classic pictures; c is shown as tanh(c) so that it fits the same scale. The exact
values are in `--format npz` / `json`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from charlstm.activations import QUANTITIES, Activations, Correlated
from charlstm.errors import CharlstmError


def display_values(acts: Activations) -> np.ndarray:
    """int8 in [-127, 127], laid out (quantity, layer, unit, time) so that one unit's
    series is contiguous for the page's script."""
    shown = []
    for quantity in QUANTITIES:
        values = acts.values[quantity]
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
) -> None:
    if fmt == "html":
        content = html_page(acts, ranking, title).encode("utf-8")
    elif fmt == "json":
        content = json.dumps(_plain(acts, features, ranking)).encode("utf-8")
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
                    **acts.values,
                    **{f"feature {name}": value for name, value in features.items()},
                )
        else:
            path.write_bytes(content)
    except OSError as error:
        raise CharlstmError(f"cannot write {path}: {error.strerror}") from None


def _plain(acts: Activations, features: dict[str, np.ndarray], ranking) -> dict:
    return {
        "text": acts.chars,
        "cell": acts.cell,
        "shape": {"time": acts.shape[0], "layers": acts.shape[1], "units": acts.shape[2]},
        "values": {q: v.tolist() for q, v in acts.values.items()},
        "features": {name: v.tolist() for name, v in features.items()},
        "ranking": {name: [c.__dict__ for c in found] for name, found in ranking.items()},
    }


def html_page(acts: Activations, ranking: dict[str, list[Correlated]], title: str) -> str:
    time, layers, units = acts.shape
    data = {
        "chars": acts.chars,
        "layers": layers,
        "units": units,
        "time": time,
        "quantities": list(QUANTITIES),
        "values": base64.b64encode(display_values(acts).tobytes()).decode("ascii"),
    }
    rows = []
    for feature, found in ranking.items():
        for rank, c in enumerate(found):
            name = html.escape(feature) if rank == 0 else ""
            rows.append(
                f'<tr class="pick" data-layer="{c.layer}" data-unit="{c.unit}" '
                f'data-quantity="{c.quantity}"><td>{name}</td><td>{c.quantity}</td>'
                f"<td>{c.layer}</td><td>{c.unit}</td><td>{c.r:+.3f}</td></tr>"
            )
    # `</` cannot appear inside the inline script, whatever the text holds.
    payload = json.dumps(data).replace("</", "<\\/")
    return (
        PAGE.replace("$TITLE", html.escape(title))
        .replace("$ROWS", "\n".join(rows))
        .replace("$DATA", payload)
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>charlstm inspect: $TITLE</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
  #controls { margin: 0.8em 0; }
  #controls label { margin-right: 1em; }
  #text { font-family: ui-monospace, monospace; font-size: 15px; line-height: 1.6;
          white-space: pre-wrap; border: 1px solid #ccc; padding: 0.6em; }
  #text span.nl::before { content: "\\21b5"; color: #999; }
  #ranking td, #ranking th { padding: 2px 10px; text-align: left; }
  #ranking tr.pick { cursor: pointer; }
  #ranking tr.pick:hover { background: #e8eefc; }
  #hover { color: #555; margin-left: 1em; }
</style>
</head>
<body>
<h1>$TITLE</h1>
<p>Each character is coloured by the chosen unit's value after the network has read it:
red negative, blue positive (c is shown as tanh(c); the gates lie in [0, 1]).
Click a row of the table to show that unit.</p>
<div id="controls">
  <label>layer <select id="layer"></select></label>
  <label>unit <input id="unit" type="number" min="0" value="0" style="width: 5em"></label>
  <label>quantity <select id="quantity"></select></label>
  <span id="hover"></span>
</div>
<div id="text"></div>
<h2>Units most correlated with features of the text</h2>
<table id="ranking">
<tr><th>feature</th><th>quantity</th><th>layer</th><th>unit</th><th>r</th></tr>
$ROWS
</table>
<script>
const DATA = $DATA;
const raw = atob(DATA.values);
const bytes = new Uint8Array(raw.length);
for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
const values = new Int8Array(bytes.buffer);
const layerPick = document.getElementById("layer");
const unitPick = document.getElementById("unit");
const quantityPick = document.getElementById("quantity");
const hover = document.getElementById("hover");
for (let l = 0; l < DATA.layers; l++) layerPick.add(new Option(String(l), String(l)));
for (const q of DATA.quantities) quantityPick.add(new Option(q, q));
unitPick.max = DATA.units - 1;

const textBox = document.getElementById("text");
const spans = DATA.chars.map((ch, t) => {
  const span = document.createElement("span");
  if (ch === "\\n") { span.className = "nl"; span.textContent = "\\n"; }
  else span.textContent = ch;
  span.dataset.t = t;
  textBox.appendChild(span);
  return span;
});

function series() {
  const q = DATA.quantities.indexOf(quantityPick.value);
  const l = Number(layerPick.value);
  const u = Math.min(Math.max(Number(unitPick.value) || 0, 0), DATA.units - 1);
  const start = ((q * DATA.layers + l) * DATA.units + u) * DATA.time;
  return values.subarray(start, start + DATA.time);
}

function colour() {
  const s = series();
  for (let t = 0; t < spans.length; t++) {
    const v = s[t] / 127;
    const a = Math.abs(v).toFixed(3);
    spans[t].style.backgroundColor =
      v >= 0 ? `rgba(30, 90, 255, ${a})` : `rgba(240, 30, 30, ${a})`;
  }
  location.hash = `layer=${layerPick.value}&unit=${unitPick.value}&quantity=${quantityPick.value}`;
}

function show(layer, unit, quantity) {
  layerPick.value = String(layer);
  unitPick.value = String(unit);
  quantityPick.value = quantity;
  colour();
}

textBox.addEventListener("mouseover", (event) => {
  const t = event.target.dataset.t;
  if (t !== undefined) hover.textContent = `character ${t}: ${(series()[t] / 127).toFixed(2)}`;
});
for (const pick of [layerPick, unitPick, quantityPick]) pick.addEventListener("change", colour);
for (const row of document.querySelectorAll("tr.pick")) {
  row.addEventListener("click", () =>
    show(row.dataset.layer, row.dataset.unit, row.dataset.quantity));
}
// The address may name a unit (#layer=0&unit=5&quantity=c); else the best-ranked one.
const asked = new URLSearchParams(location.hash.slice(1));
const best = document.querySelector("tr.pick");
if (asked.has("unit") || !best) {
  show(asked.get("layer") || 0, asked.get("unit") || 0, asked.get("quantity") || "h");
} else {
  best.click();
}
</script>
</body>
</html>
"""
