"use strict";
// The explorer page. Each section has its own status line next to its controls; a new
// input clears that section's old results; every request's failure ends in a status line
// (never an uncaught rejection); answers to superseded requests are dropped.
const state = { info: null, selected: null, offset: 0, total: 0, galleryRun: 0, names: {}, own: null,
                frames: [], walks: [], layer: null, map: null, paths: [], attacked: false, seq: {} };
const $ = (id) => document.getElementById(id);
const pct = (c) => (100 * c).toFixed(0) + "%";
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const RETRIES = 5;
const MAP_SIZE = 420;  // each map canvas's drawing size; CSS scales it to the column
const PLACE_POLL_MS = 400;  // how often a waiting request asks for its place in the model's queue
// this page's name in the model's queue: pages take turns, so another page's backlog delays ours by one request
const CLIENT = Math.random().toString(36).slice(2);
const pending = {};  // per section, the abort of its request in flight: a superseded one is dropped by the server too

function status(name, kind, text) {
  const line = $(`${name}-status`);
  line.dataset.state = kind; line.textContent = text;
}

function explain(response, body) {
  const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
  return detail || `${response.status} ${response.statusText}`;
}

// While a request waits for the model, asks the server where it stands in the queue (by the
// ticket it was sent with) and says so: "queued: 2 ahead of you", then "working…" when it runs.
function watchPlace(section, ticket, current) {
  let done = false;
  const poll = async () => {
    const place = await fetch(`/api/queue?ticket=${ticket}`).then((r) => r.json()).catch(() => ({}));
    if (done || !current()) return;  // answered meanwhile: its own status line stands
    if (place.ahead > 0) status(section, "queued", `queued: ${place.ahead} ahead of you`);
    else if (place.ahead === 0) status(section, "busy", "working…");
    timer = setTimeout(poll, PLACE_POLL_MS);
  };
  let timer = setTimeout(poll, PLACE_POLL_MS);
  return () => { done = true; clearTimeout(timer); };
}

// fetch for one section: "busy" while it runs, "queued" while it waits for the model or the
// server is full, an error line when it fails; returns the JSON body, or null when it failed
// or was superseded (its request then aborted: the server drops its work).
async function call(section, url, options = {}) {
  const seq = (state.seq[section] = (state.seq[section] || 0) + 1);
  const current = () => state.seq[section] === seq;
  const ticket = `${section}-${seq}-${Math.random().toString(36).slice(2)}`;
  pending[section]?.abort();
  const controller = (pending[section] = new AbortController());
  options = { ...options, signal: controller.signal, headers: { ...options.headers, "x-ticket": ticket, "x-client": CLIENT } };
  status(section, "busy", "working…");
  for (let attempt = 0; ; attempt++) {
    let response, body;
    const stopWatching = watchPlace(section, ticket, current);
    try {
      response = await fetch(url, options);
      body = await response.json().catch(() => ({}));
    } catch (err) {
      if (current()) status(section, "error", "The explorer does not answer: is `perceptreg explore` still running? Start it again and reload this page.");
      return null;
    } finally {
      stopWatching();
    }
    if (!current()) return null;
    if (response.status === 503 && attempt < RETRIES) {
      const wait = Number(response.headers.get("Retry-After") || 2);
      status(section, "queued", `queued: the explorer is busy with other requests; trying again in ${wait} s`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * wait));
      if (!current()) return null;
      status(section, "busy", "working…");
      continue;
    }
    if (!response.ok) { status(section, "error", explain(response, body)); return null; }
    status(section, "done", "");
    return body;
  }
}

// A section's answer in flight is no longer wanted: dropped here, and its request aborted.
function supersede(section) {
  state.seq[section] = (state.seq[section] || 0) + 1;
  pending[section]?.abort();
}

function figure(src, caption, testid, size) {
  const div = document.createElement("div");
  div.className = "figure";
  const img = document.createElement("img");
  img.className = "px"; img.src = src; img.alt = caption;
  if (size) img.style.width = img.style.height = size;
  if (testid) div.dataset.testid = testid;
  const text = document.createElement("div");
  text.textContent = caption;
  div.append(img, text);
  return div;
}

// Run names as the page shows them: the shortest endings of their paths that tell them apart
// ("joint/run", "post-hoc/run"); the whole name is in the title and the map's heading.
function shortNames(names) {
  const parts = names.map((name) => name.split("/").filter(Boolean));
  for (let k = 1; ; k++) {
    const short = parts.map((p) => p.slice(-k).join("/"));
    if (new Set(short).size === short.length || parts.every((p) => p.length <= k)) return short;
  }
}
const compared = () => state.info.compared.length > 0;
// "P(x)", or with several runs "P(x) joint/run": every perception says whose it is
const whose = (what, run) => (compared() ? `${what} ${state.names[run]}` : what);
const answer = (r) => `H ${r.prediction} ${pct(r.confidence)}`;

// In place of a compared run's pictures: why it has none (a run of `attach` without the layer shown).
function lacking(c, size = null) {
  const div = document.createElement("div");
  div.className = "figure missing"; div.dataset.testid = "missing"; div.textContent = c.missing;
  if (size) div.style.width = size;
  return div;
}

// An image's readings by every run: x, then each run's P(x) captioned with H's answer.
function readings(r, caption = "x", testid = null, size = null) {
  return [figure(r.image, caption, null, size), figure(r.perception, `${whose("P(x)", state.info.run)}: ${answer(r)}`, testid, size),
          ...r.compared.map((c) => (c.missing ? lacking(c, size)
            : figure(c.perception, `${whose("P(x)", c.run)}: ${answer(c)}`, testid && `${testid}-compared`, size)))];
}

function labelled(src, name) {
  const box = document.createElement("div");
  const img = document.createElement("img"); img.className = "px"; img.src = src; img.alt = name;
  const text = document.createElement("span"); text.textContent = text.title = name;  // cut to 3 lines: all in the title
  box.append(text, img);
  return box;
}

// --- gallery --------------------------------------------------------------------------------
function galleryQuery() {
  const params = new URLSearchParams({ offset: state.offset, limit: 24, show: $("filter-show").value, sort: $("filter-sort").value });
  if ($("filter-label").value !== "") params.set("label", $("filter-label").value);
  if (state.layer) params.set("layer", state.layer);
  return params;
}

async function loadGallery() {
  $("more").disabled = true;  // until this page is shown: a double click must not fetch it twice
  const run = ++state.galleryRun;
  try {
    const page = await call("gallery", `/api/gallery?${galleryQuery()}`);
    if (!page) return;
    $("gallery").append(...page.items.map(card));
    state.offset += page.items.length; state.total = page.total;
    if (page.total === 0) status("gallery", "done", "No test image matches these filters.");
  } finally {
    if (state.galleryRun === run) $("more").disabled = state.offset >= state.total;  // not superseded
  }
}

function card(item) {
  const div = document.createElement("div");
  const wrong = item.prediction !== item.label;
  div.className = wrong ? "card wrong" : "card";
  div.dataset.testid = "card"; div.dataset.index = item.index; div.tabIndex = 0; div.setAttribute("role", "button");
  const pair = document.createElement("div"); pair.className = "pair";
  pair.append(labelled(item.image, "x"), labelled(item.perception, whose("P(x)", state.info.run)),
    ...item.compared.map((c) => (c.missing ? lacking(c) : labelled(c.perception, whose("P(x)", c.run)))));
  const text = document.createElement("div");
  text.textContent = `label ${item.label} · H: ${item.prediction} ${pct(item.confidence)}${wrong ? " ✗" : ""}` +
    item.compared.map((c) => (c.missing ? "" : ` · ${state.names[c.run]}: ${c.prediction} ${pct(c.confidence)}`)).join("");
  const error = document.createElement("div");
  error.dataset.testid = "card-error";  // compared: each run's error by its name, as its P(x) is named
  error.textContent = "recon. error " + [{ ...item, run: state.info.run }, ...item.compared.filter((c) => !c.missing)]
    .map((r) => `${compared() ? `${state.names[r.run]} ` : ""}${r.error.toFixed(4)}`).join(" · ");
  div.setAttribute("aria-label", `image ${item.index}, label ${item.label}, H says ${item.prediction}`);
  div.append(pair, text, error);
  if (state.selected && state.selected.index === item.index) div.classList.add("selected");
  div.onclick = () => select(item);
  div.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(item); } };
  return div;
}

function resetGallery() {
  state.offset = 0; state.total = 0;
  $("gallery").replaceChildren();
  return loadGallery();
}

// The selected image, shown with every run's answer where the attack is and under the map.
function select(item) {
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  document.querySelector(`.card[data-index="${item.index}"]`)?.classList.add("selected");
  state.selected = item;
  const said = [item, ...item.compared].map((r, k) => (r.missing ? r.missing
    : `${compared() ? `${state.names[k ? r.run : state.info.run]}: ` : ""}H says ${r.prediction} (${pct(r.confidence)})`));
  $("selected").textContent = `Image ${item.index}: label ${item.label}, ${said.join("; ")}.`;
  $("selected-figures").replaceChildren(...readings(item, "x", null, "56px"));
  $("map-selected").replaceChildren(...readings(item, `image ${item.index}, label ${item.label}`, "map-perception", "72px"));
  $("attack").disabled = false; $("edit").disabled = false;
  clearAttack(); clearWalk();
  $("edit-original").src = item.image;
}

// A test image by index, as the gallery shows it (of the layer shown), then selected.
async function pick(index) {
  const item = await call("pick", `/api/image?${new URLSearchParams({ index, ...(state.layer ? { layer: state.layer } : {}) })}`);
  if (item) select(item);
  return item;
}

// --- attack ---------------------------------------------------------------------------------
function clearAttack() {
  state.attacked = false; supersede("attack"); state.paths = [];
  $("attack-result").replaceChildren(); $("attack-numbers").textContent = "";
  status("attack", "done", ""); drawMap();
}

function top3(probabilities) {
  return probabilities.map((p, k) => [p, state.info.classes[k]]).sort((a, b) => b[0] - a[0]).slice(0, 3)
    .map(([p, name]) => `${name} ${pct(p)}`).join(", ");
}

function attackRow(name, r) {
  const block = document.createElement("div"); block.dataset.testid = "attack-row";
  if (r.missing) { block.append(lacking(r, "auto")); return block; }  // a line of its own, the row's width
  if (name) {
    const title = document.createElement("div"); title.className = "compare-name";
    title.textContent = `${state.names[name]}: L-inf distance ${r.linf_distance.toFixed(3)}, H on x_adv: ${top3(r.adversarial.probabilities)}`;
    block.append(title);
  }
  const row = document.createElement("div"); row.className = "row";
  const size = "84px";
  row.append(figure(r.clean.image, `x: H ${r.clean.prediction} ${pct(r.clean.confidence)}`, null, size),
    figure(r.adversarial.image, `x_adv: H ${r.adversarial.prediction} ${pct(r.adversarial.confidence)}`, "adv-prediction", size),
    figure(r.clean.perception, "P(x)", null, size), figure(r.adversarial.perception, "P(x_adv)", null, size),
    figure(r.difference, "x_adv − x, amplified", "difference", size));
  block.append(row);
  return block;
}

async function attack() {
  if (!state.selected) return;
  const target = $("target").value;
  const body = { index: state.selected.index, norm: $("norm").value, eps: Number($("eps").value),
                 steps: Number($("steps").value), target: target === "" ? null : Number(target), layer: state.layer };
  const r = await call("attack", "/api/attack", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!r) return;
  const compared = r.compared.length > 0;
  $("attack-result").replaceChildren(attackRow(compared ? r.run : null, r), ...r.compared.map((c) => attackRow(c.run, c)));
  $("attack-result").dataset.adversarial = r.adversarial.prediction;
  $("attack-result").dataset.clean = r.clean.prediction;
  $("attack-numbers").textContent = `eps ${body.eps} (${body.norm === "linf" ? "L-inf" : "L2"}): L-inf distance ${r.linf_distance.toFixed(3)}, L2 distance ${r.l2_distance.toFixed(2)}. ` +
    `H on x: ${top3(r.clean.probabilities)}; on x_adv: ${top3(r.adversarial.probabilities)}.`;
  state.attacked = true; state.paths = [r.path, ...r.compared.map((c) => c.path)]; drawMap();
}

// --- latent walk ----------------------------------------------------------------------------
function clearWalk() {
  state.frames = []; state.walks = []; supersede("edit"); $("edit-compared").replaceChildren();
  $("alpha").disabled = true; $("alpha").value = 0;
  $("edit-image").removeAttribute("src"); $("edit-caption").innerHTML = "&nbsp;";
  status("edit", "done", "");
}

function showFrame() {
  const at = Number($("alpha").value), frame = state.frames[at];
  if (!frame) return;
  $("edit-image").src = frame.image;
  $("edit-caption").textContent = `${whose("", state.info.run).trim()} a = ${frame.alpha}: ${answer(frame)}`.trim();
  $("edit-compared").replaceChildren(...state.walks.map((walk) =>
    figure(walk.frames[at].image, `${state.names[walk.run]} a = ${walk.frames[at].alpha}: ${answer(walk.frames[at])}`, "edit-compared")));
}

async function edit() {
  if (!state.selected) return;
  clearWalk();
  const r = await call("edit", "/api/edit", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ index: state.selected.index, target: Number($("edit-target").value) }) });
  if (!r) return;
  state.frames = r.frames; state.walks = r.compared; $("edit-original").src = r.image;
  $("alpha").max = r.frames.length - 1; $("alpha").value = 0; $("alpha").disabled = false;
  showFrame();
}

// --- map of z -------------------------------------------------------------------------------
// One map per run (each run has its own z), of the same test images; an attack's path is drawn
// on each run's map.
async function loadMap() {
  state.map = null; $("maps").replaceChildren(); $("map-sample").textContent = "";
  const query = state.layer ? `?layer=${encodeURIComponent(state.layer)}` : "";
  const map = await call("map", `/api/map${query}`);
  if (!map) return;
  const pad = (values) => {
    const lo = Math.min(...values), hi = Math.max(...values), margin = 0.05 * (hi - lo || 1);
    return [lo - margin, hi + margin];
  };
  state.map = { ...map, runs: map.maps.map((m) => (m.missing ? m : { ...m, x: pad(m.points.map((p) => p[0])), y: pad(m.points.map((p) => p[1])) })) };
  $("maps").replaceChildren(...state.map.runs.map((m, k) => {
    const box = document.createElement("div"); box.className = "map-box";
    if (state.map.runs.length > 1) {
      const name = document.createElement("div"); name.className = "compare-name"; name.textContent = m.run;
      box.append(name);
    }
    if (m.missing) { box.append(lacking(m)); return box; }
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = MAP_SIZE; canvas.dataset.testid = "map"; canvas.dataset.run = k;
    canvas.onclick = (event) => clickMap(event, k);
    box.append(canvas);
    return box;
  }));
  if (map.index.length < map.total) {
    $("map-sample").textContent = `The map shows ${map.index.length} of the ${map.total} test images, a random sample (the same on every start).`;
  }
  $("map-legend").replaceChildren(...state.info.classes.map((name, k) => {
    const key = document.createElement("span");
    key.innerHTML = `<i style="background:${COLOURS[k % COLOURS.length]}"></i>`; key.append(name);
    return key;
  }));
  drawMap();
}

function mapPixel(point, k = 0) {
  const m = state.map.runs[k];
  return [(point[0] - m.x[0]) / (m.x[1] - m.x[0]) * MAP_SIZE, (1 - (point[1] - m.y[0]) / (m.y[1] - m.y[0])) * MAP_SIZE];
}

function drawMap() {
  if (!state.map) return;
  document.querySelectorAll("#maps canvas").forEach((canvas) => {
    const k = Number(canvas.dataset.run), ctx = canvas.getContext("2d"), m = state.map.runs[k];
    ctx.clearRect(0, 0, MAP_SIZE, MAP_SIZE);
    m.points.forEach((point, i) => {
      const [x, y] = mapPixel(point, k);
      ctx.fillStyle = COLOURS[state.map.labels[i] % COLOURS.length];
      ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
      if (m.predictions[i] !== state.map.labels[i]) { ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.stroke(); }
    });
    if (state.paths[k]) drawPath(ctx, state.paths[k].map((point) => mapPixel(point, k)));
  });
}

function drawPath(ctx, pixels) {
  // black on a white halo: it stands out from the points, black rings included
  for (const [colour, width] of [["#fff", 6], ["#000", 2.5]]) {
    ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.lineJoin = "round";
    ctx.beginPath(); pixels.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y))); ctx.stroke();
  }
  const ends = [[pixels[0], "#fff"], [pixels[pixels.length - 1], "#000"]];
  ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
  for (const [[x, y], fill] of ends) { ctx.fillStyle = fill; ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.fill(); ctx.stroke(); }
}

function clickMap(event, k) {
  const canvas = event.currentTarget, box = canvas.getBoundingClientRect();
  const at = [(event.clientX - box.left) * MAP_SIZE / box.width, (event.clientY - box.top) * MAP_SIZE / box.height];
  let best = -1, bestDistance = 64;  // within 8 px
  state.map.runs[k].points.forEach((point, i) => {
    const [x, y] = mapPixel(point, k), d = (x - at[0]) ** 2 + (y - at[1]) ** 2;
    if (d < bestDistance) { best = i; bestDistance = d; }
  });
  if (best >= 0) pick(state.map.index[best]);
}

// --- your own digit -------------------------------------------------------------------------
// An upload or a drawing (``source`` says which), read by every run; either clears the other.
async function perceive(blob, source) {
  $("own-result").replaceChildren(); delete $("own-result").dataset.prediction;
  state.own = blob ? { blob, source } : null;
  if (!blob) { status("own", "done", ""); return; }
  const form = new FormData();
  form.append("file", blob, blob.name || "drawing.png");
  const query = state.layer ? `?layer=${encodeURIComponent(state.layer)}` : "";
  const r = await call("own", `/api/perceive${query}`, { method: "POST", body: form });
  if (!r) return;
  $("own-result").replaceChildren(...readings(r, `x: ${source}, as the model reads it`, "own-prediction"));
  $("own-result").dataset.prediction = r.prediction;
}

// A digit is drawn white on black, as MNIST's are; a colour model's image in the pen's colour on
// grey, the colour farthest from none.
const inColour = () => state.info.input_shape[0] === 3;

function setUpCanvas() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  let drawing = false, drawn = false;
  $("pen-choice").hidden = !inColour();
  const clear = () => {
    ctx.fillStyle = inColour() ? "#808080" : "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); drawn = false;
  };
  clear();
  const point = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  canvas.onpointerdown = (e) => { drawing = true; ctx.beginPath(); ctx.moveTo(...point(e)); };
  canvas.onpointermove = (e) => {
    if (!drawing) return;
    drawn = true; ctx.lineTo(...point(e)); ctx.strokeStyle = inColour() ? $("pen").value : "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.stroke();
  };
  canvas.onpointerup = canvas.onpointerleave = () => { drawing = false; };
  $("clear").onclick = () => { clear(); perceive(null); };
  $("perceive-drawing").onclick = () => {
    perceive(null); $("upload").value = "";  // the upload's result goes with it
    // said here, not sent: the server's 422 for a blank image would be an error in the console
    if (!drawn) {
      status("own", "error", `The drawing is empty: draw on the ${inColour() ? "grey" : "black"} square first.`);
      return;
    }
    canvas.toBlob((blob) => perceive(blob, "your drawing"), "image/png");
  };
  $("upload").onchange = () => {
    clear();  // the drawing goes: the result beside it is the upload's
    const file = $("upload").files[0];
    perceive(file, file && `your upload ${file.name}`);
  };
}

// --- the page -------------------------------------------------------------------------------
// What `perceive` and `invert` saved for the layer shown: measures of P(x), the spread, x' beside P(x)
async function loadSaved() {
  const found = await call("saved", `/api/saved${state.layer ? `?layer=${encodeURIComponent(state.layer)}` : ""}`);
  if (!found) return;
  $("saved").hidden = !found.lines.length && !found.figures.length;
  $("saved-lines").replaceChildren(...found.lines.map((line) => Object.assign(document.createElement("p"), { textContent: line })));
  $("saved-figures").replaceChildren(...found.figures.map((f) => {
    const img = Object.assign(document.createElement("img"), { src: f.image, alt: f.title, title: f.title });
    img.style.maxWidth = "100%";
    return img;
  }));
  status("saved", "done", "");
}

async function switchLayer() {
  // another layer's perception: every shown perception is redrawn at it, the selected image
  // kept and its attack (if one is shown) run again on the new layer
  state.layer = $("layer").value;
  const attacked = state.attacked, own = state.own;
  clearAttack();
  const selected = state.selected && pick(state.selected.index).then((item) => item && attacked && attack());
  await Promise.all([resetGallery(), loadMap(), selected, own && perceive(own.blob, own.source), loadSaved()]);
}

// What the page offers, as this run allows: no walk for a run of `attach` (its layers have
// no classifier of their own), each run named when several are compared.
function introduce() {
  const info = state.info, runs = [info.run, ...info.compared];
  const things = info.input_shape[0] === 1 ? "digit" : "image";
  const offers = ["attack it", ...(info.latent_edits ? ["walk it toward a class"] : []), "find it on the map of z"];
  const kept = info.layer ? "P(x) is what the chosen layer of your model keeps of an image x (choose the layer above); H is your model."
    : "P(x) = D(F(x)) is what the model keeps of an image x; H is its classifier.";
  let text = `${kept} Its decoder learnt with the ${info.decoder_loss} loss. Pick an image in the gallery, then ${offers.join(", ")}; or draw or upload your own ${things}.`;
  if (runs.length > 1) text += ` Every section shows each run: ${runs.map((r) => state.names[r]).join(" and ")}.`;
  $("intro").textContent = text;
  $("own-title").textContent = `Your own ${things}`;
}

function setUpControls() {
  for (const [i, name] of state.info.classes.entries()) {
    for (const id of ["target", "edit-target", "filter-label"]) $(id).add(new Option(name, i));
  }
  const last = state.info.alphas.length - 1;  // a tick label at every other stop, centred where the thumb stops
  $("alpha-scale").replaceChildren(...state.info.alphas.flatMap((a, i) => (i % 2 ? [] : [Object.assign(
    document.createElement("span"), { textContent: a, style: `--at: ${i / last}` })])));
  $("attack").onclick = attack; $("edit").onclick = edit; $("alpha").oninput = showFrame;
  for (const id of ["norm", "steps", "target"]) $(id).addEventListener("change", clearAttack);
  $("eps").oninput = () => { $("eps-value").textContent = Number($("eps").value).toFixed(2); };
  // the radius of the run's images in the chosen norm: L-inf 0.2 on digits, 0.03 on colour; L2 2 and 0.5
  const radius = () => {
    const eps = state.info.eps[$("norm").value];
    $("eps").max = Math.max(0.5, 2.5 * eps); $("eps").value = eps; $("eps").oninput();
  };
  $("norm").addEventListener("change", radius); radius();
  // the eps slider re-runs an attack that is shown; otherwise its old result is stale
  $("eps").onchange = () => (state.attacked ? attack() : clearAttack());
  $("edit-target").onchange = clearWalk;
  for (const id of ["filter-label", "filter-show", "filter-sort"]) $(id).onchange = resetGallery;
  $("more").onclick = loadGallery;
  setUpCanvas();
}

async function main() {
  state.info = await call("page", "/api/info");
  if (!state.info) return;
  if (state.info.layer) {  // a run of `attach`: the perception of one layer of the user's model at a time
    state.layer = state.info.layer;
    for (const name of state.info.layers) $("layer").add(new Option(name, name));
    $("layer").value = state.layer;
    $("layer-choice").hidden = false;
    $("layer").onchange = switchLayer;
  }
  const runs = [state.info.run, ...state.info.compared], short = shortNames(runs);
  runs.forEach((run, k) => { state.names[run] = short[k]; });
  $("walk").hidden = !state.info.latent_edits;
  introduce();
  setUpControls();
  await Promise.all([loadGallery(), loadMap(), loadSaved()]);
  document.body.dataset.ready = "true";
}
window.explorer = { state, mapPixel };  // for tests: where a point of the map is drawn
main();
