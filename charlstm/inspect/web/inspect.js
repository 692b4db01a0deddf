// charlstm inspect's page: colours the text by a unit's values, by the model's surprisal,
// or by the change in loss when a unit is ablated; DATA is filled in by report.py.
const raw = atob(DATA.values);
const bytes = new Uint8Array(raw.length);
for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
const values = new Int8Array(bytes.buffer);
const $ = (id) => document.getElementById(id);
const viewPick = $("view"), layerPick = $("layer"), unitPick = $("unit");
const quantityPick = $("quantity"), featurePick = $("feature"), hover = $("hover");
for (let l = 0; l < DATA.layers; l++) layerPick.add(new Option(String(l), String(l)));
for (const q of DATA.quantities) quantityPick.add(new Option(q, q));
for (const f of Object.keys(DATA.ablation)) featurePick.add(new Option(f, f));
unitPick.max = DATA.units - 1;

const textBox = $("text");
const spans = DATA.chars.map((ch, t) => {
  const span = document.createElement("span");
  if (ch === "\n") { span.className = "nl"; span.textContent = "\n"; }
  else span.textContent = ch;
  span.dataset.t = t;
  textBox.appendChild(span);
  return span;
});

function unitSeries() {
  const q = DATA.quantities.indexOf(quantityPick.value);
  const l = Number(layerPick.value);
  const u = Math.min(Math.max(Number(unitPick.value) || 0, 0), DATA.units - 1);
  const start = ((q * DATA.layers + l) * DATA.units + u) * DATA.time;
  return Array.from(values.subarray(start, start + DATA.time), (v) => v / 127);
}

// The values shown, in [-1, 1] (blue positive, red negative), and their exact numbers.
function shown() {
  if (viewPick.value === "surprisal") {
    const top = Math.max(...DATA.surprisal, 1e-9);
    return [DATA.surprisal.map((s) => -s / top), DATA.surprisal, "nats"];
  }
  if (viewPick.value === "ablation") {
    const picked = DATA.ablation[featurePick.value];
    if (!picked) return [DATA.chars.map(() => 0), DATA.chars.map(() => 0), ""];
    const top = Math.max(...picked.delta.map(Math.abs), 1e-9);
    return [picked.delta.map((d) => -d / top), picked.delta, "nats more"];
  }
  const s = unitSeries();
  return [s, s, ""];
}

function colour() {
  const [scaled] = shown();
  for (let t = 0; t < spans.length; t++) {
    const v = scaled[t];
    const a = Math.min(1, Math.abs(v)).toFixed(3);
    spans[t].style.backgroundColor =
      v >= 0 ? `rgba(30, 90, 255, ${a})` : `rgba(240, 30, 30, ${a})`;
  }
  const unitView = viewPick.value === "unit";
  for (const pick of [layerPick, unitPick, quantityPick]) pick.disabled = !unitView;
  featurePick.disabled = viewPick.value !== "ablation";
  location.hash = `view=${viewPick.value}&layer=${layerPick.value}&unit=${unitPick.value}` +
    `&quantity=${quantityPick.value}&feature=${encodeURIComponent(featurePick.value)}`;
}

function show(layer, unit, quantity) {
  viewPick.value = "unit";
  layerPick.value = String(layer);
  unitPick.value = String(unit);
  quantityPick.value = quantity;
  colour();
}

textBox.addEventListener("mouseover", (event) => {
  const t = event.target.dataset.t;
  if (t === undefined) return;
  const [, exact, unit] = shown();
  const next = DATA.top[t].map(([ch, p]) =>
    `${JSON.stringify(ch)} ${(p * 100).toFixed(1)}%`).join("  ");
  hover.textContent = `character ${t}: ${Number(exact[t]).toFixed(3)} ${unit}` +
    `  |  surprisal ${DATA.surprisal[t].toFixed(2)} nats  |  next: ${next}`;
});
for (const pick of [viewPick, layerPick, unitPick, quantityPick, featurePick])
  pick.addEventListener("change", colour);
for (const row of document.querySelectorAll("#ranking tr.pick")) {
  row.addEventListener("click", () =>
    show(row.dataset.layer, row.dataset.unit, row.dataset.quantity));
}
for (const row of document.querySelectorAll("#matches tr.pick")) {
  row.addEventListener("click", () => {
    for (const span of document.querySelectorAll("span.found")) span.classList.remove("found");
    const [start, end] = [Number(row.dataset.start), Number(row.dataset.end)];
    for (let t = start; t < end; t++) spans[t].classList.add("found");
    spans[start].scrollIntoView({ block: "center" });
  });
}
// The address may choose the view and unit (#view=unit&layer=0&unit=5&quantity=c,
// #view=surprisal, #view=ablation&feature=comment); else the best-ranked unit.
const asked = new URLSearchParams(location.hash.slice(1));
const best = document.querySelector("#ranking tr.pick");
if (asked.has("feature") && DATA.ablation[asked.get("feature")])
  featurePick.value = asked.get("feature");
if (asked.has("unit") || asked.has("view") || !best) {
  layerPick.value = asked.get("layer") || "0";
  unitPick.value = asked.get("unit") || "0";
  quantityPick.value = asked.get("quantity") || "h";
  viewPick.value = asked.get("view") || "unit";
  colour();
} else {
  best.click();
}
