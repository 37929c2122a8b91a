// inpaint-zoo's comparison page: paint one mask, run several models, see their fills side by side.
// Plain browser JavaScript, no build step and nothing fetched from outside this server.
"use strict";

const $ = (id) => document.getElementById(id);
const HOLE_COLOUR = [255, 48, 48];  // how the mask is painted on screen; only its alpha is the mask
const SKETCH_COLOUR = "#1d4ed8";
const UNDO_DEPTH = 50;
const MIN_DISPLAY_SIDE = 320;  // small photos are shown enlarged so that they can be painted

const state = {
  models: [],           // from /api/models
  imageBlob: null,      // the file as loaded: sent unchanged, so known pixels come back exactly
  imageName: "image.png",
  imageURL: null,
  tool: "brush",
  drawing: false,
  last: null,
  undo: [],
  redo: [],
  busy: false,
};
window.zoo = { lastMask: null, state };  // the last mask sent (a PNG data URL), for tests and curious users

const source = $("source");
const maskCanvas = $("mask-canvas");
const sketchCanvas = $("sketch-canvas");
const maskCtx = maskCanvas.getContext("2d", { willReadFrequently: true });
const sketchCtx = sketchCanvas.getContext("2d", { willReadFrequently: true });

// ------------------------------------------------------------------ messages

function showError(message) {
  const line = String(message).split("\n")[0];
  $("error").textContent = line;
  $("error").hidden = !line;
}

function setStatus(text) { $("status").textContent = text; }

async function errorFrom(response) {
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (e) { /* not JSON */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

// ------------------------------------------------------------------ models

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) { showError(await errorFrom(response)); return; }
  state.models = await response.json();
  const list = $("models");
  list.textContent = "";
  for (const m of state.models) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = m.name;
    box.dataset.model = m.name;
    box.addEventListener("change", updateControls);
    label.append(box, " ", m.name);
    if (m.random_weights) label.append(badge("random weights", "random"));
    if (m.takes_seed) label.append(badge("seed", "seed"));
    if (m.takes_sketch) label.append(badge("sketch", "sketch"));
    const details = document.createElement("small");
    details.textContent = `${m.preset} · weights: ${m.weights} · licence: ${m.license} · native ${m.native_size} px`;
    label.title = [m.paper, "released weights:", ...m.known_weights].join("\n");
    label.append(details);
    list.append(label);
  }
  const random = state.models.filter((m) => m.random_weights).map((m) => m.name);
  if (random.length) {
    $("random-warning").textContent = `Warning: ${random.join(", ")} ${random.length > 1 ? "have" : "has"} ` +
      "random (untrained) weights: their fills are noise, not what the architecture can do.";
    $("random-warning").hidden = false;
  }
  $("tool-sketch").hidden = !state.models.some((m) => m.takes_sketch);
  updateControls();
}

function badge(text, kind) {
  const span = document.createElement("span");
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

function chosenModels() {
  const names = [...document.querySelectorAll("#models input:checked")].map((b) => b.value);
  return state.models.filter((m) => names.includes(m.name));
}

function updateControls() {
  const chosen = chosenModels();
  const stochastic = chosen.some((m) => m.takes_seed);
  $("seed").disabled = !stochastic;
  $("variants").disabled = state.busy || !stochastic;
  $("run").disabled = state.busy;
}

// ------------------------------------------------------------------ the photo

function loadImage(file) {
  if (!file || !file.type.startsWith("image/")) { showError("that is not an image file"); return; }
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    if (state.imageURL) URL.revokeObjectURL(state.imageURL);
    state.imageBlob = file;
    state.imageName = file.name || "image.png";
    state.imageURL = url;
    source.src = url;
    source.hidden = false;
    for (const canvas of [maskCanvas, sketchCanvas]) {
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
    }
    const scale = Math.max(1, MIN_DISPLAY_SIDE / Math.min(img.naturalWidth, img.naturalHeight));
    source.style.width = `${Math.round(img.naturalWidth * scale)}px`;
    $("stage").classList.remove("empty");
    state.undo = [];
    state.redo = [];
    $("results").textContent = "";
    showError("");
    setStatus(`${img.naturalWidth} x ${img.naturalHeight} px: paint the hole`);
  };
  img.onerror = () => { URL.revokeObjectURL(url); showError("the browser cannot decode that image"); };
  img.src = url;
}

$("image-file").addEventListener("change", (e) => loadImage(e.target.files[0]));

const stage = $("stage");
stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragging"); });
stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
stage.addEventListener("drop", (e) => {
  e.preventDefault();
  stage.classList.remove("dragging");
  if (e.dataTransfer.files.length) loadImage(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  for (const item of e.clipboardData ? e.clipboardData.items : []) {
    if (item.type.startsWith("image/")) { loadImage(item.getAsFile()); e.preventDefault(); return; }
  }
});

// ------------------------------------------------------------------ painting

function snapshot() {
  return { mask: maskCtx.getImageData(0, 0, maskCanvas.width, maskCanvas.height),
           sketch: sketchCtx.getImageData(0, 0, sketchCanvas.width, sketchCanvas.height) };
}

function restore(snap) {
  maskCtx.putImageData(snap.mask, 0, 0);
  sketchCtx.putImageData(snap.sketch, 0, 0);
}

function remember() {
  state.undo.push(snapshot());
  if (state.undo.length > UNDO_DEPTH) state.undo.shift();
  state.redo = [];
}

function undo() { if (state.undo.length) { state.redo.push(snapshot()); restore(state.undo.pop()); } }
function redo() { if (state.redo.length) { state.undo.push(snapshot()); restore(state.redo.pop()); } }

function canvasPoint(e) {
  const rect = maskCanvas.getBoundingClientRect();
  const scale = maskCanvas.width / rect.width;
  return { x: (e.clientX - rect.left) * scale, y: (e.clientY - rect.top) * scale, scale };
}

function strokeTo(point) {
  const sketching = state.tool === "sketch";
  const ctx = sketching ? sketchCtx : maskCtx;
  const size = Number($("brush-size").value);
  ctx.save();
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = sketching ? Math.max(1, 3 * point.scale) : Math.max(1, size * point.scale);
  ctx.strokeStyle = sketching ? SKETCH_COLOUR : `rgb(${HOLE_COLOUR.join(",")})`;
  ctx.globalCompositeOperation = state.tool === "eraser" ? "destination-out" : "source-over";
  ctx.beginPath();
  ctx.moveTo(state.last.x, state.last.y);
  ctx.lineTo(point.x + 0.01, point.y);  // a zero-length segment draws nothing: a click still paints a dot
  ctx.stroke();
  ctx.restore();
  state.last = point;
}

sketchCanvas.addEventListener("pointerdown", (e) => {
  if (!state.imageBlob || e.button !== 0) return;
  e.preventDefault();
  sketchCanvas.setPointerCapture(e.pointerId);
  remember();
  state.drawing = true;
  state.last = canvasPoint(e);
  strokeTo(state.last);
});
sketchCanvas.addEventListener("pointermove", (e) => { if (state.drawing) strokeTo(canvasPoint(e)); });
for (const type of ["pointerup", "pointercancel"]) {
  sketchCanvas.addEventListener(type, () => { state.drawing = false; });
}

for (const button of document.querySelectorAll(".tool")) {
  button.addEventListener("click", () => {
    state.tool = button.dataset.tool;
    for (const b of document.querySelectorAll(".tool")) b.classList.toggle("active", b === button);
  });
}
$("brush-size").addEventListener("input", (e) => { $("brush-size-value").textContent = e.target.value; });
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", () => {
  remember();
  maskCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  sketchCtx.clearRect(0, 0, sketchCanvas.width, sketchCanvas.height);
});

// A layer as a black-and-white PNG: painted (alpha > 127) is white. The brush's soft edge is decided here,
// once, so the mask the server gets is exactly the mask the user can download.
function binaryPNG(canvas) {
  const w = canvas.width, h = canvas.height;
  const pixels = canvas.getContext("2d").getImageData(0, 0, w, h);
  const out = new ImageData(w, h);
  let painted = 0;
  for (let i = 0; i < pixels.data.length; i += 4) {
    const on = pixels.data[i + 3] > 127 ? 255 : 0;
    painted += on ? 1 : 0;
    out.data[i] = out.data[i + 1] = out.data[i + 2] = on;
    out.data[i + 3] = 255;
  }
  const flat = document.createElement("canvas");
  flat.width = w;
  flat.height = h;
  flat.getContext("2d").putImageData(out, 0, 0);
  return { url: flat.toDataURL("image/png"), painted };
}

function dataURLToBlob(url) {
  const [head, body] = url.split(",");
  const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}

function download(url, name) {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

$("download-mask").addEventListener("click", () => {
  if (!state.imageBlob) { showError("load an image first"); return; }
  download(binaryPNG(maskCanvas).url, "mask.png");
});

$("mask-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (!file) return;
  if (!state.imageBlob) { showError("load the image before its mask"); return; }
  const img = new Image();
  img.onload = () => {
    URL.revokeObjectURL(img.src);
    if (img.naturalWidth !== maskCanvas.width || img.naturalHeight !== maskCanvas.height) {
      showError(`mask ${file.name} is ${img.naturalWidth}x${img.naturalHeight} but the image is ` +
                `${maskCanvas.width}x${maskCanvas.height}`);
      return;
    }
    const flat = document.createElement("canvas");
    flat.width = img.naturalWidth;
    flat.height = img.naturalHeight;
    const ctx = flat.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const pixels = ctx.getImageData(0, 0, flat.width, flat.height);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const d = pixels.data;
      const hole = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2] > 127;  // white = hole, as the CLI
      [d[i], d[i + 1], d[i + 2]] = HOLE_COLOUR;
      d[i + 3] = hole ? 255 : 0;
    }
    remember();
    maskCtx.putImageData(pixels, 0, 0);
    showError("");
  };
  img.onerror = () => showError(`the browser cannot decode ${file.name}`);
  img.src = URL.createObjectURL(file);
});

// ------------------------------------------------------------------ running the models

async function run(variants) {
  showError("");
  if (!state.imageBlob) { showError("load an image first"); return; }
  const chosen = chosenModels();
  if (!chosen.length) { showError("tick at least one model"); return; }
  const mask = binaryPNG(maskCanvas);
  if (!mask.painted) { showError("paint the hole first (or upload a mask)"); return; }
  window.zoo.lastMask = mask.url;
  const form = new FormData();
  form.append("image", state.imageBlob, state.imageName);
  form.append("mask", dataURLToBlob(mask.url), "mask.png");
  for (const m of chosen) form.append("models", m.name);
  form.append("seed", $("seed").value || "0");
  form.append("variants", String(variants));
  if (chosen.some((m) => m.takes_sketch)) {
    const sketch = binaryPNG(sketchCanvas);
    if (sketch.painted) form.append("sketch", dataURLToBlob(sketch.url), "sketch.png");
  }
  state.busy = true;
  updateControls();
  setStatus(`running ${chosen.map((m) => m.name).join(", ")} ...`);
  try {
    let response = await fetch("/api/inpaint", { method: "POST", body: form });
    if (response.status === 503) {  // the device's queue is full: wait as long as the server says, once
      const wait = Number(response.headers.get("Retry-After") || "1");
      setStatus(`the server is busy; retrying in ${wait} s`);
      await new Promise((done) => setTimeout(done, wait * 1000));
      response = await fetch("/api/inpaint", { method: "POST", body: form });
    }
    if (!response.ok) { showError(await errorFrom(response)); setStatus(""); return; }
    const body = await response.json();
    showResults(body);
    setStatus(`done: ${body.results.length} result${body.results.length > 1 ? "s" : ""}` +
              (body.warnings.length ? ` (${body.warnings.join("; ")})` : ""));
  } catch (e) {
    showError(`cannot reach the server: ${e.message}`);
    setStatus("");
  } finally {
    state.busy = false;
    updateControls();
  }
}

function showResults(body) {
  const results = $("results");
  results.textContent = "";
  for (const r of body.results) {
    const url = `data:image/png;base64,${r.png}`;
    const figure = document.createElement("figure");
    figure.className = "result";
    figure.dataset.model = r.model;
    const img = document.createElement("img");
    img.className = "result-image";
    img.alt = `${r.model} result`;
    img.src = url;
    img.dataset.result = url;
    img.style.width = source.style.width;
    const caption = document.createElement("figcaption");
    const name = document.createElement("b");
    name.textContent = r.model;
    caption.append(name);
    if (r.random_weights) caption.append(badge("random weights", "random"));
    const seed = r.seed === null ? "" : ` · seed ${r.seed}`;
    caption.append(` · ${r.weights} · ${r.seconds.toFixed(2)} s${seed}`);
    const link = document.createElement("a");
    link.href = url;
    link.download = `${r.model}${r.seed === null ? "" : `_seed${r.seed}`}.png`;
    link.textContent = "download";
    caption.append(link);
    figure.append(img, caption);
    results.append(figure);
  }
}

$("run").addEventListener("click", () => run(1));
$("variants").addEventListener("click", () => run(4));

// ------------------------------------------------------------------ hold to see the original

function showOriginal(on) {
  for (const img of document.querySelectorAll("#results img.result-image")) {
    img.src = on && state.imageURL ? state.imageURL : img.dataset.result;
  }
}

const hold = $("hold-original");
hold.addEventListener("pointerdown", () => showOriginal(true));
for (const type of ["pointerup", "pointerleave", "pointercancel"]) hold.addEventListener(type, () => showOriginal(false));
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") return;
  if (e.key === "o" && !e.repeat) showOriginal(true);
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); (e.shiftKey ? redo : undo)(); }
});
document.addEventListener("keyup", (e) => { if (e.key === "o") showOriginal(false); });

loadModels().catch((e) => showError(`cannot load the model list: ${e.message}`));
