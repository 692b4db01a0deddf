// The probe report: the held-out text, each character coloured by the chosen feature's
// probe (its probability) or by the probe's best unit (scaled to [-1, 1]).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  DATA.features.forEach((f, i) => $("feature").add(new Option(f.name, String(i))));
  function colour(v, signed) {
    const x = signed ? v : 2 * v - 1;  // a probability, from [0, 1] to [-1, 1]
    const a = Math.min(1, Math.abs(x));
    return x >= 0 ? `rgba(31, 119, 180, ${a * 0.7})` : `rgba(214, 39, 40, ${a * 0.7})`;
  }
  function draw() {
    const f = DATA.features[Number($("feature").value)];
    const by = $("by").value;
    const text = $("text");
    text.textContent = "";
    DATA.chars.forEach((char, t) => {
      const span = document.createElement("span");
      span.textContent = char;
      span.style.background = colour(f[by][t], by === "unit");
      if (f.label[t]) span.style.textDecoration = "underline";
      span.title = `probe ${f.probe[t].toFixed(3)}, unit ${f.unit[t].toFixed(3)}`;
      text.appendChild(span);
    });
  }
  $("feature").addEventListener("change", draw);
  $("by").addEventListener("change", draw);
  draw();
})();
