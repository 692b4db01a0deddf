// charlstm's recurrent step and sampler, run in the page: the model's weights are in the
// <script id="model"> element (base64, float16 or float32, row-major as PyTorch keeps them).
// The cells follow PyTorch's equations (nn.LSTM, nn.GRU, nn.RNN with tanh) and charlstm's
// peephole LSTM, so greedy text with float32 weights is the text `charlstm sample --greedy`
// writes.
"use strict";

(function () {
  const M = JSON.parse(document.getElementById("model").textContent);
  const $ = (id) => document.getElementById(id);

  // -- weights ---------------------------------------------------------------------------
  function bytesOf(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function halfTable() {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 31;
      const f = h & 1023;
      if (e === 0) t[h] = sign * f * Math.pow(2, -24);
      else if (e === 31) t[h] = f ? NaN : sign * Infinity;
      else t[h] = sign * (1 + f / 1024) * Math.pow(2, e - 15);
    }
    return t;
  }

  function tensors() {
    const raw = bytesOf(M.data);
    const all = {};
    if (M.precision === "fp16") {
      const halves = new Uint16Array(raw.buffer, 0, raw.length / 2);
      const table = halfTable();
      const values = new Float32Array(halves.length);
      for (let i = 0; i < halves.length; i++) values[i] = table[halves[i]];
      for (const [name, [offset, size]] of Object.entries(M.tensors))
        all[name] = values.subarray(offset, offset + size);
    } else {
      const values = new Float32Array(raw.buffer, 0, raw.length / 4);
      for (const [name, [offset, size]] of Object.entries(M.tensors))
        all[name] = values.subarray(offset, offset + size);
    }
    return all;
  }

  const W = tensors();
  const H = M.hidden;
  const GATES = { lstm: 4, peephole: 4, gru: 3, rnn: 1 }[M.cell];
  const layers = [];
  for (let l = 0; l < M.layers; l++) {
    const w = (name) => W[`rnn.${name}_l${l}`];
    const zeros = new Float32Array(H);
    layers.push({
      inputs: l === 0 ? M.embedding : H,
      Wih: w("weight_ih"), Whh: w("weight_hh"), bih: w("bias_ih"), bhh: w("bias_hh"),
      pi: w("peephole_i") || zeros, pf: w("peephole_f") || zeros, po: w("peephole_o") || zeros,
      gi: new Float32Array(GATES * H), gh: new Float32Array(GATES * H),
    });
  }
  const embedding = W["embedding.weight"];
  const decoderW = W["decoder.weight"] || embedding; // tied weights: one matrix for both
  const decoderB = W["decoder.bias"];
  const V = M.vocab.length;

  // out[r] = bias[r] + sum_j A[r, j] x[j]
  function matvec(A, x, cols, bias, out) {
    const rows = out.length;
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const base = r * cols;
      for (let j = 0; j < cols; j++) s += A[base + j] * x[j];
      out[r] = s + bias[r];
    }
  }

  const sigmoid = (v) => 1 / (1 + Math.exp(-v));

  function layerStep(L, x, h, c) {
    matvec(L.Wih, x, L.inputs, L.bih, L.gi);
    matvec(L.Whh, h, H, L.bhh, L.gh);
    const gi = L.gi, gh = L.gh;
    if (M.cell === "lstm" || M.cell === "peephole") {
      for (let k = 0; k < H; k++) {
        const i = sigmoid(gi[k] + gh[k] + L.pi[k] * c[k]);
        const f = sigmoid(gi[H + k] + gh[H + k] + L.pf[k] * c[k]);
        const g = Math.tanh(gi[2 * H + k] + gh[2 * H + k]);
        const cn = f * c[k] + i * g;
        const o = sigmoid(gi[3 * H + k] + gh[3 * H + k] + L.po[k] * cn);
        c[k] = cn;
        h[k] = o * Math.tanh(cn);
      }
    } else if (M.cell === "gru") {
      for (let k = 0; k < H; k++) {
        const r = sigmoid(gi[k] + gh[k]);
        const z = sigmoid(gi[H + k] + gh[H + k]);
        const n = Math.tanh(gi[2 * H + k] + r * gh[2 * H + k]);
        h[k] = (1 - z) * n + z * h[k];
      }
    } else {
      for (let k = 0; k < H; k++) h[k] = Math.tanh(gi[k] + gh[k]);
    }
  }

  // The network's state and one step: read character `id`, leave the next one's logits.
  function newState() {
    return layers.map(() => ({ h: new Float32Array(H), c: new Float32Array(H) }));
  }
  const logits = new Float32Array(V);
  function step(state, id) {
    let x = embedding.subarray(id * M.embedding, (id + 1) * M.embedding);
    layers.forEach((L, l) => {
      layerStep(L, x, state[l].h, state[l].c);
      x = state[l].h;
    });
    matvec(decoderW, x, H, decoderB, logits);
  }

  // -- text <-> ids ------------------------------------------------------------------------
  const idOf = new Map(M.vocab.map((cp, id) => [cp, id]));
  function encode(text) {
    const symbols = M.mode === "byte" ? Array.from(new TextEncoder().encode(text))
                                      : Array.from(text, (ch) => ch.codePointAt(0));
    const ids = [], unknown = new Set();
    for (const s of symbols) {
      if (idOf.has(s)) ids.push(idOf.get(s));
      else unknown.add(String.fromCodePoint(s));
    }
    return { ids, unknown: [...unknown] };
  }
  // Symbols past U+10FFFF are reserved ids (a document's end, labels): no text.
  const RESERVED = 0x110000;
  function decoder() {
    if (M.mode !== "byte")
      return (id) => (M.vocab[id] >= RESERVED ? "" : String.fromCodePoint(M.vocab[id]));
    const utf8 = new TextDecoder("utf-8");
    return (id) => (M.vocab[id] >= RESERVED ? ""
                                            : utf8.decode(Uint8Array.of(M.vocab[id]), { stream: true }));
  }
  const lineStart = [10, 32].map((cp) => idOf.get(cp)).find((id) => id !== undefined) ?? 0;
  // A document model starts every document from its end id (then the label's id).
  const END = M.end;
  function startIds(opts) {
    if (END === null) return [];
    return opts.label in M.labels ? [END, M.labels[opts.label]] : [END];
  }

  // -- choosing the next character ----------------------------------------------------------
  function mulberry32(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function argmax(values) {
    let best = 0;
    for (let v = 1; v < values.length; v++) if (values[v] > values[best]) best = v;
    return best;
  }

  function choose(opts, random) {
    if (opts.greedy) return argmax(logits);
    const scaled = Array.from(logits, (v) => v / opts.temperature);
    let order = scaled.map((_, v) => v).sort((a, b) => scaled[b] - scaled[a]);
    if (opts.topK > 0) order = order.slice(0, opts.topK);
    const top = scaled[order[0]];
    let probs = order.map((v) => Math.exp(scaled[v] - top));
    let total = probs.reduce((a, b) => a + b, 0);
    if (opts.topP > 0 && opts.topP < 1) {
      let kept = 0, mass = 0;
      while (kept < probs.length && mass < opts.topP * total) mass += probs[kept++];
      order = order.slice(0, kept);
      probs = probs.slice(0, kept);
      total = mass;
    }
    let r = random() * total;
    for (let i = 0; i < order.length; i++) {
      r -= probs[i];
      if (r <= 0) return order[i];
    }
    return order[order.length - 1];
  }

  // -- generation: a whole text at once, or streamed into the page ---------------------------
  function primed(opts) {
    const { ids, unknown } = encode(opts.prime);
    $("notice").textContent = unknown.length
      ? `left out of the prime (not in the vocabulary): ${unknown.join(" ")}` : "";
    // A document model starts at the document start; a text model at a line start
    // (charlstm/generate/context.py says why).
    const start = startIds(opts);
    return { ids, context: [...(start.length ? start : [lineStart]), ...ids] };
  }

  function* characters(opts) {
    const { ids, context } = primed(opts);
    const decode = decoder();
    yield ids.map(decode).join("");
    const state = newState();
    for (const id of context) step(state, id);
    const random = mulberry32(opts.seed);
    for (let n = 0; n < opts.length; n++) {
      const next = choose(opts, random);
      if (next === END) break; // a document ends here
      yield decode(next);
      step(state, next);
    }
  }

  // -- search: the model's own probabilities (temperature 1), compared per prediction ------
  function logSoftmax(values) {
    let top = -Infinity;
    for (const v of values) if (v > top) top = v;
    let total = 0;
    for (const v of values) total += Math.exp(v - top);
    const shift = top + Math.log(total);
    return Float64Array.from(values, (v) => v - shift);
  }

  // ln P of each id of `ids` after `context`, the end of a document included
  function logProbOf(context, ids) {
    const state = newState();
    for (const id of context) step(state, id);
    let total = 0;
    for (const id of ids) {
      total += logSoftmax(logits)[id];
      step(state, id);
    }
    return total;
  }

  function copyState(state) {
    return state.map((s) => ({ h: s.h.slice(), c: s.c.slice() }));
  }

  // Beam search as `charlstm sample --beam K`: the `width` likeliest prefixes at every
  // character, up to `length` or a document's end; greedy's text is kept when likelier.
  // A beam of 2 or more keeps no 16-character string twice (BEAM_NO_REPEAT_NGRAM in
  // charlstm/generate/search.py): it ranks by the odds renormalised without the
  // characters that would repeat one, and reports the model's own.
  const BEAM_NO_REPEAT_NGRAM = 16;

  // The ids that would complete an n-gram already in `text` (one UTF-16 unit an id).
  function completing(text, n) {
    const found = new Set();
    if (n === 1) {
      for (let i = 0; i < text.length; i++) found.add(text.charCodeAt(i));
      return found;
    }
    const tail = text.slice(text.length - n + 1);
    if (tail.length < n - 1) return found;
    let at = text.indexOf(tail);
    while (at + tail.length < text.length) {
      found.add(text.charCodeAt(at + tail.length));
      at = text.indexOf(tail, at + 1);
    }
    return found;
  }

  function beam(opts, width) {
    const { ids, context } = primed(opts);
    const decode = decoder();
    const n = width > 1 ? BEAM_NO_REPEAT_NGRAM : 0;
    const history = ids.map((i) => String.fromCharCode(i)).join("");
    const run = (k) => {
      const start = newState();
      for (const id of context.slice(0, -1)) step(start, id);
      let beams = [{ ids: [], score: 0, own: 0, text: history, state: start,
                     last: context[context.length - 1] }];
      const finished = [];
      for (let len = 0; len < opts.length && beams.length; len++) {
        const candidates = [];
        for (const b of beams) {
          const state = copyState(b.state);
          step(state, b.last);
          const lp = logSoftmax(logits);
          let rank = lp;
          const banned = n ? completing(b.text, n) : null;
          if (banned && banned.size && banned.size < V) {
            const kept = Array.from(logits);
            for (const v of banned) kept[v] = -Infinity;
            rank = logSoftmax(kept);
          }
          for (let v = 0; v < V; v++) {
            if (rank[v] === -Infinity) continue;
            candidates.push({ from: b, state, id: v, score: b.score + rank[v], own: b.own + lp[v] });
          }
        }
        // ties broken by the lower flat index, as torch.topk does on a CPU
        candidates.sort((a, b) => b.score - a.score);
        beams = [];
        for (const c of candidates.slice(0, k)) {
          const next = { ids: [...c.from.ids, c.id], score: c.score, own: c.own, state: c.state,
                         last: c.id, text: n ? c.from.text + String.fromCharCode(c.id) : "" };
          if (c.id === END) finished.push(next);
          else beams.push(next);
        }
      }
      finished.push(...beams);
      const per = (b) => b.score / Math.max(b.ids.length, 1);
      return finished.reduce((best, b) => (per(b) > per(best) ? b : best));
    };
    let found = run(width);
    if (width > 1) {
      const greedy = run(1);
      const own = (b) => b.own / Math.max(b.ids.length, 1);
      if (own(greedy) > own(found)) found = greedy;
    }
    return ids.map(decode).join("") + found.ids.map(decode).join("");
  }

  // The likeliest of `n` draws by bits per prediction (`charlstm sample --best-of N`).
  function bestOf(opts, n) {
    const { ids, context } = primed(opts);
    const prime = ids.map(decoder()).join("");
    let best = null;
    for (let i = 0; i < n; i++) {
      const random = mulberry32((opts.seed + i) >>> 0);
      const state = newState();
      for (const id of context) step(state, id);
      const drawn = [];
      for (let k = 0; k < opts.length; k++) {
        const next = choose(opts, random);
        drawn.push(next);
        if (next === END) break;
        step(state, next);
      }
      const per = logProbOf(context, drawn) / Math.max(drawn.length, 1);
      if (best === null || per > best.per) best = { per, drawn };
    }
    const decode = decoder();
    return prime + best.drawn.map(decode).join("");
  }

  // "Make N": N whole documents, one per line, each from the document start.
  function makeDocuments(opts) {
    const lines = [];
    for (let i = 0; i < opts.count; i++)
      lines.push([...characters({ ...opts, seed: (opts.seed + i) >>> 0 })].join(""));
    return lines.join("\n");
  }

  function options() {
    const seedText = $("seed").value.trim();
    return {
      prime: $("prime").value,
      length: Math.max(0, parseInt($("length").value, 10) || 0),
      temperature: Math.max(1e-6, parseFloat($("temperature").value) || 1),
      topK: parseInt($("top-k").value, 10) || 0,
      topP: parseFloat($("top-p").value) || 0,
      greedy: $("greedy").checked,
      seed: seedText === "" ? (Math.random() * 2 ** 32) >>> 0 : parseInt(seedText, 10) >>> 0,
      search: $("search").value,
      width: Math.max(1, parseInt($("width").value, 10) || 1),
      count: Math.max(1, parseInt($("count").value, 10) || 1),
      label: $("label").value,
    };
  }

  // Whole texts at once: a search, or documents.
  function writeWhole(opts, what) {
    const started = performance.now();
    const text = what === "make" ? makeDocuments(opts)
      : opts.search === "beam" ? beam(opts, opts.width) : bestOf(opts, opts.width);
    $("output").textContent = text;
    report([...text].length, performance.now() - started);
    document.body.dataset.done = "1";
  }

  function report(chars, ms) {
    const rate = chars / Math.max(ms / 1000, 1e-9);
    $("stats").textContent = `${chars} characters in ${(ms / 1000).toFixed(2)} s: ` +
      `${Math.round(rate)} characters/s`;
    $("stats").dataset.charsPerSec = rate.toFixed(1);
  }

  function generateAll(opts) {
    const started = performance.now();
    const pieces = [];
    for (const piece of characters(opts)) pieces.push(piece);
    $("output").textContent = pieces.join("");
    report(opts.length, performance.now() - started);
    document.body.dataset.done = "1";
  }

  let running = null;
  async function generateStreaming() {
    const opts = options();
    const run = (running = {});
    const out = $("output");
    out.textContent = "";
    const started = performance.now();
    let made = -1;
    const source = characters(opts);
    for (;;) {
      const until = performance.now() + 30; // then let the page draw what is there
      let chunk = "", done = false;
      while (performance.now() < until) {
        const next = source.next();
        if (next.done) { done = true; break; }
        chunk += next.value;
        made++;
      }
      out.textContent += chunk;
      if (done || running !== run) break;
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    report(Math.max(made, 0), performance.now() - started);
    document.body.dataset.done = "1";
  }

  function generate() {
    const opts = options();
    if (opts.search !== "sample") writeWhole(opts, "search");
    else generateStreaming();
  }
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", () => { running = null; });
  $("make").addEventListener("click", () => writeWhole(options(), "make"));
  if (END !== null) {
    $("documents").hidden = false;
    for (const name of Object.keys(M.labels)) $("label").add(new Option(name, name));
    if (!Object.keys(M.labels).length) $("label-box").hidden = true;
  }

  // The page's contract: #prime=...&length=N&temperature=T&top-k=K&top-p=P&seed=S
  // &greedy=1&search=beam|best-of&width=K&count=N&label=L&autorun=1|make fills the
  // controls; autorun generates on load (make: N documents) and writes the whole text,
  // prime included, into #output.
  const given = new URLSearchParams(location.hash.slice(1));
  for (const key of ["prime", "length", "temperature", "top-k", "top-p", "seed", "search",
                     "width", "count"])
    if (given.has(key)) $(key).value = given.get(key);
  if (given.has("label")) { $("label").add(new Option(given.get("label"))); $("label").value = given.get("label"); }
  if (given.has("greedy")) $("greedy").checked = given.get("greedy") === "1";
  const autorun = given.get("autorun");
  if (autorun === "make") writeWhole(options(), "make");
  else if (autorun === "1" && options().search !== "sample") writeWhole(options(), "search");
  else if (autorun === "1") generateAll(options());
})();
