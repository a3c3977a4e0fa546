"use strict";
const state = { info: null, selected: null, offset: 0, frames: [], layer: null };
const layerQuery = (sep) => (state.layer ? `${sep}layer=${encodeURIComponent(state.layer)}` : "");
const $ = (id) => document.getElementById(id);
const pct = (c) => (100 * c).toFixed(0) + "%";

function figure(src, caption, testid) {
  const div = document.createElement("div");
  div.className = "figure";
  const img = document.createElement("img");
  img.className = "px"; img.src = src; img.alt = caption;
  if (testid) div.dataset.testid = testid;
  const text = document.createElement("div");
  text.textContent = caption;
  div.append(img, text);
  return div;
}

async function call(url, options) {
  $("error").textContent = "";
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    $("error").textContent = `Error ${response.status}: ${detail || response.statusText}`;
    throw new Error(detail);
  }
  return body;
}

async function loadGallery() {
  const page = await call(`/api/gallery?offset=${state.offset}&limit=24${layerQuery("&")}`);
  for (const item of page.items) {
    const card = document.createElement("div");
    card.className = "card"; card.dataset.testid = "card"; card.dataset.index = item.index;
    const a = document.createElement("img"); a.className = "px"; a.src = item.image; a.alt = "x";
    const b = document.createElement("img"); b.className = "px"; b.src = item.perception; b.alt = "P(x)";
    const text = document.createElement("div");
    text.textContent = `label ${item.label}, H: ${item.prediction} ${pct(item.confidence)}`;
    card.append(a, b, text);
    card.onclick = () => select(item, card);
    $("gallery").append(card);
  }
  state.offset += page.items.length;
  $("more").disabled = state.offset >= page.total;
}

function select(item, card) {
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  card.classList.add("selected");
  state.selected = item;
  $("selected").textContent = `Image ${item.index}: label ${item.label}, H says ${item.prediction} (${pct(item.confidence)})`;
  $("attack").disabled = false; $("edit").disabled = false;
}

async function attack() {
  const target = $("target").value;
  const body = { index: state.selected.index, norm: $("norm").value, eps: Number($("eps").value),
                 steps: Number($("steps").value), target: target === "" ? null : Number(target), layer: state.layer };
  $("attack").disabled = true;
  try {
    const r = await call("/api/attack", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    $("attack-result").replaceChildren(
      figure(r.clean.image, `x: H ${r.clean.prediction} ${pct(r.clean.confidence)}`),
      figure(r.adversarial.image, `x_adv: H ${r.adversarial.prediction} ${pct(r.adversarial.confidence)}`, "adv-prediction"),
      figure(r.clean.perception, "P(x)"),
      figure(r.adversarial.perception, "P(x_adv)"));
    $("attack-result").dataset.adversarial = r.adversarial.prediction;
    $("attack-result").dataset.clean = r.clean.prediction;
  } finally { $("attack").disabled = false; }
}

function showFrame() {
  const frame = state.frames[Number($("alpha").value)];
  if (!frame) return;
  $("edit-image").src = frame.image;
  $("edit-caption").textContent = `a = ${frame.alpha}: H ${frame.prediction} ${pct(frame.confidence)}`;
}

async function edit() {
  $("edit").disabled = true;
  try {
    const r = await call("/api/edit", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ index: state.selected.index, target: Number($("edit-target").value) }) });
    state.frames = r.frames;
    $("alpha").max = r.frames.length - 1; $("alpha").value = 0; $("alpha").disabled = false;
    showFrame();
  } finally { $("edit").disabled = false; }
}

async function perceive(blob) {
  const form = new FormData();
  form.append("file", blob, "image.png");
  const r = await call(`/api/perceive${layerQuery("?")}`, { method: "POST", body: form });
  $("own-result").replaceChildren(figure(r.image, "as the model sees it"),
    figure(r.perception, `P(x): H ${r.prediction} ${pct(r.confidence)}`, "own-prediction"));
  $("own-result").dataset.prediction = r.prediction;
}

function setUpCanvas() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const point = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.onpointerdown = (e) => { drawing = true; ctx.beginPath(); ctx.moveTo(...point(e)); };
  canvas.onpointermove = (e) => {
    if (!drawing) return;
    ctx.lineTo(...point(e)); ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.stroke();
  };
  canvas.onpointerup = canvas.onpointerleave = () => { drawing = false; };
  $("clear").onclick = clear;
  $("perceive-drawing").onclick = () => canvas.toBlob(perceive, "image/png");
}

async function switchLayer() {
  // another layer's perception: every shown perception is stale
  state.layer = $("layer").value; state.offset = 0; state.selected = null;
  $("gallery").replaceChildren(); $("attack-result").replaceChildren(); $("own-result").replaceChildren();
  $("selected").textContent = "No image selected."; $("attack").disabled = true;
  await loadGallery();
}

async function main() {
  state.info = await call("/api/info");
  if (state.info.layer) {  // a run of `attach`: the perception of one layer of the user's model at a time
    state.layer = state.info.layer;
    for (const name of state.info.layers) $("layer").add(new Option(name, name));
    $("layer").value = state.layer;
    $("layer-choice").hidden = false;
    $("layer").onchange = switchLayer;
  }
  $("walk").hidden = !state.info.latent_edits;
  for (const [i, name] of state.info.classes.entries()) {
    $("target").add(new Option(name, i));
    $("edit-target").add(new Option(name, i));
  }
  $("attack").onclick = attack; $("edit").onclick = edit; $("alpha").oninput = showFrame;
  $("more").onclick = loadGallery;
  $("upload").onchange = () => $("upload").files[0] && perceive($("upload").files[0]);
  setUpCanvas();
  await loadGallery();
  document.body.dataset.ready = "true";
}
main();
