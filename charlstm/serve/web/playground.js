// The playground of `charlstm serve`: the server's own API, from the browser. Text
// streams from POST /v1/completions (logprobs: 5), or with units held (steering) from
// POST /sample (stream: true, clamp), next words from POST /suggest, documents from
// POST /sample. Every request carries the API key when one is given.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { key: sessionStorage.getItem("charlstm-key") || "", prompt: "", chars: [],
                  controller: null, documents: false, done: Promise.resolve() };

  function headers() {
    const h = { "Content-Type": "application/json" };
    if (state.key) h.Authorization = "Bearer " + state.key;
    return h;
  }

  async function api(path, body) {
    const response = await fetch(path, body === undefined ? { headers: headers() }
      : { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (response.status === 401) { $("key").hidden = false; throw new Error("the API key is needed"); }
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error ? answer.error.message : response.statusText);
    return answer;
  }

  function number(id) { const v = $(id).value; return v === "" ? undefined : Number(v); }
  function text(id) { const v = $(id).value; return v === "" ? undefined : v; }

  function constraints() {
    const contains = text("contains");
    return { regex: text("regex"), ends_with: text("ends_with"), allow: text("allow"),
             ban: text("ban"), min_length: number("min_length"), max_length: number("max_length"),
             contains: contains === undefined ? undefined : contains.split(",").map((s) => s.trim()).filter(Boolean) };
  }

  function tint(p) { return `hsl(${Math.round(120 * p)}, 75%, 82%)`; }

  function show(message) { $("status").textContent = message; }

  function fullText() { return state.prompt + state.chars.map((c) => c.char).join(""); }

  function addChar(char, logProb, alternatives) {
    const p = Math.exp(logProb);
    const span = document.createElement("span");
    span.className = "gen";
    span.textContent = char;
    span.style.background = tint(p);
    span.dataset.index = String(state.chars.length);
    span.dataset.p = p.toFixed(4);
    state.chars.push({ char, p, alternatives: alternatives || {} });
    $("text").appendChild(span);
  }

  async function generate(prompt) {
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    state.prompt = prompt;
    state.chars = [];
    $("prompt").value = prompt;
    $("text").textContent = "";
    const prime = document.createElement("span");
    prime.className = "prime";
    prime.textContent = prompt;
    $("text").appendChild(prime);
    $("tip").hidden = true;
    show("generating…");
    const body = { prompt, max_tokens: number("length"), temperature: number("temperature"),
                   top_k: number("top_k"), top_p: number("top_p"), seed: number("seed"),
                   stream: true, logprobs: 5, ...constraints() };
    let finish = "";
    if (clamps().length) return steered(body, controller);
    try {
      const response = await fetch("/v1/completions", { method: "POST", headers: headers(),
        body: JSON.stringify(body), signal: controller.signal });
      if (!response.ok) {
        const answer = await response.json();
        if (response.status === 401) $("key").hidden = false;
        throw new Error(answer.error ? answer.error.message : response.statusText);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        const events = pending.split("\n\n");
        pending = events.pop();
        for (const event of events) {
          const data = event.replace(/^data: /, "");
          if (data === "[DONE]") continue;
          const choice = JSON.parse(data).choices[0];
          if (choice.finish_reason) finish = choice.finish_reason;
          const lp = choice.logprobs;
          if (!lp) continue;
          lp.tokens.forEach((char, i) => addChar(char, lp.token_logprobs[i], lp.top_logprobs[i]));
        }
      }
      show(`${state.chars.length} characters (${finish})`);
      document.body.dataset.generated = String(Number(document.body.dataset.generated || 0) + 1);
      await suggestWords();
    } catch (error) {
      if (error.name !== "AbortError") show(error.message);
    }
  }

  // The units to hold, as the API takes them: "layer:unit=value" each.
  function clamps() {
    const units = text("steer-units");
    if (units === undefined) return [];
    const value = $("steer-value").value;
    return units.split(",").map((u) => u.trim()).filter(Boolean).map((u) => `${u}=${value}`);
  }

  // A steered text: POST /sample streams it as plain text (no odds to tint it by).
  async function steered(body, controller) {
    const asked = { prime: body.prompt, length: body.max_tokens, temperature: body.temperature,
                    top_k: body.top_k, top_p: body.top_p !== 1 ? body.top_p : undefined,
                    seed: body.seed, clamp: clamps(), stream: true, ...constraints() };
    try {
      const response = await fetch("/sample", { method: "POST", headers: headers(),
        body: JSON.stringify(asked), signal: controller.signal });
      if (!response.ok) {
        const answer = await response.json();
        throw new Error(answer.error ? answer.error.message : response.statusText);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let skip = [...body.prompt].length;  // the text begins with the prime
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const char of decoder.decode(value, { stream: true })) {
          if (skip > 0) { skip -= 1; continue; }
          addChar(char, 0, {});
        }
      }
      show(`${state.chars.length} characters, steered (${clamps().join(", ")})`);
      document.body.dataset.generated = String(Number(document.body.dataset.generated || 0) + 1);
    } catch (error) {
      if (error.name !== "AbortError") show(error.message);
    }
  }

  async function suggestWords() {
    const found = await api("/suggest", { prime: fullText(), chars: 0, words: 5 });
    const list = $("words");
    list.textContent = "";
    for (const word of found.words) {
      const item = document.createElement("li");
      item.textContent = `${JSON.stringify(word.text)} ${(100 * word.prob).toFixed(1)}%`;
      item.addEventListener("click", () => generate(fullText() + word.text));
      list.appendChild(item);
    }
  }

  // Take `char` in place of the character at `index`, and go on from there.
  function take(index, char) {
    const before = state.chars.slice(0, index).map((c) => c.char).join("");
    state.done = generate(state.prompt + before + char);
    return state.done;
  }

  function showTip(span) {
    const entry = state.chars[Number(span.dataset.index)];
    const tip = $("tip");
    tip.textContent = "";
    const ranked = Object.entries(entry.alternatives).sort((a, b) => b[1] - a[1]);
    for (const [char, logProb] of ranked) {
      const button = document.createElement("button");
      button.textContent = `${JSON.stringify(char)}  ${(100 * Math.exp(logProb)).toFixed(1)}%`;
      button.dataset.char = char;
      button.addEventListener("click", () => take(Number(span.dataset.index), char));
      tip.appendChild(button);
    }
    const box = span.getBoundingClientRect();
    tip.style.left = `${box.left + window.scrollX}px`;
    tip.style.top = `${box.bottom + window.scrollY + 2}px`;
    tip.hidden = false;
  }

  async function make() {
    const body = { prime: $("prompt").value, documents: number("make-count"),
                   temperature: number("temperature"), seed: number("seed"), ...constraints() };
    show("making…");
    try {
      const made = await api("/sample", body);
      const list = $("made");
      list.textContent = "";
      for (const doc of made.documents) {
        const item = document.createElement("li");
        item.textContent = `${doc.text}  (${doc.bpc.toFixed(2)} bpc)`;
        list.appendChild(item);
      }
      show(`${made.documents.length} documents, ${made.repeats} repeats`);
    } catch (error) { show(error.message); }
  }

  async function start() {
    try {
      const info = await api("/info");
      $("key").hidden = true;
      state.documents = info.documents;
      $("documents").hidden = !info.documents;
      $("model").textContent = `${info.model}: ${info.layers}x${info.hidden} ${info.cell}, ` +
        `vocabulary ${info.vocab_size}, step ${info.step}` + (info.documents ? ", documents" : "");
    } catch (error) { $("model").textContent = error.message; }
  }

  $("generate").addEventListener("click", () => { state.done = generate($("prompt").value); });
  $("steer-value").addEventListener("input", () => { $("steer-shown").value = $("steer-value").value; });
  $("steer-value").addEventListener("change", () => {
    if (clamps().length) state.done = generate($("prompt").value);
  });
  $("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); show("stopped"); });
  $("make").addEventListener("click", make);
  $("key-ok").addEventListener("click", () => {
    state.key = $("api-key").value;
    sessionStorage.setItem("charlstm-key", state.key);
    start();
  });
  $("text").addEventListener("mouseover", (event) => {
    if (event.target.classList && event.target.classList.contains("gen")) showTip(event.target);
  });
  window.playground = { state, generate, take, fullText };
  start();
})();
