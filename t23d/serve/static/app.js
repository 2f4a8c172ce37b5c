// The t23d page: forms that create jobs, the queue (live by server-sent events), the gallery and viewer.
// Plain ES modules, no build step; it uses only the public REST API (see /docs).

const jobs = new Map();
let viewer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const res = await fetch(path, { credentials: "same-origin", ...options });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      const body = await res.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.status === 204 ? null : res.json();
}

function say(text, isError = false) {
  const s = $("form-status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

const fileUrl = (job, rel) => `/api/jobs/${job.id}/files/${rel}?v=${Math.round(job.updated_at * 1000)}-${job.step}`;

// ------------------------------------------------------------------ forms
function fillSelect(select, values, labels = values) {
  select.replaceChildren(...values.map((v, i) => el("option", { value: v }, labels[i])));
}

function numberOrNull(value) {
  return value === "" ? null : Number(value);
}

async function submitGenerate(event) {
  event.preventDefault();
  const f = event.target;
  const body = {
    kind: "generate",
    prompt: f.prompt.value.trim(),
    negative_prompt: f.negative_prompt.value.trim() || null,
    preset: f.preset.value,
    steps: numberOrNull(f.steps.value),
    seed: numberOrNull(f.seed.value),
    prior: f.prior.value || null,
  };
  try {
    const { id } = await api("/api/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    say(`Queued job ${id}.`);
    f.prompt.value = "";
    refresh();
  } catch (e) {
    say(`Could not queue the job: ${e.message}`, true);
  }
}

async function submitPhotos(event) {
  event.preventDefault();
  const f = event.target;
  const data = new FormData();
  data.append("kind", "reconstruct");
  for (const file of f.files.files) data.append("files", file, file.name);
  for (const name of ["data_format", "preset", "steps", "seed", "downscale", "faces", "texture_size"]) {
    if (f[name].value !== "") data.append(name, f[name].value);
  }
  say(`Uploading ${f.files.files.length} file(s)…`);
  try {
    const { id } = await api("/api/jobs", { method: "POST", body: data });
    say(`Queued job ${id}.`);
    f.files.value = "";
    refresh();
  } catch (e) {
    say(`Upload refused: ${e.message}`, true);
  }
}

// ------------------------------------------------------------------ actions
async function act(job, action) {
  try {
    if (action === "delete") {
      if (!confirm(`Delete "${job.title}" and its files?`)) return;
      await api(`/api/jobs/${job.id}`, { method: "DELETE" });
      jobs.delete(job.id);
    } else {
      await api(`/api/jobs/${job.id}/${action}`, { method: "POST" });
    }
    say(`${action}: ${job.title}`);
    refresh();
  } catch (e) {
    say(`${action} failed: ${e.message}`, true);
  }
}

// ------------------------------------------------------------------ rendering
function queueItem(job) {
  const steps = job.steps || 0;
  const label = steps ? `step ${job.step} / ${steps}` : job.status;
  const parts = [label];
  if (job.loss !== null && job.loss !== undefined) parts.push(`loss ${Number(job.loss).toPrecision(4)}`);
  if (job.eta_s !== null && job.eta_s !== undefined && job.status === "running") parts.push(`ETA ${fmtDuration(job.eta_s)}`);
  if (job.phase) parts.push(job.phase);
  const img = job.files.preview
    ? el("img", { src: fileUrl(job, job.files.preview), alt: `latest preview of ${job.title}` })
    : el("div", { class: "thumb", role: "presentation" });
  const buttons = [];
  if (job.status === "queued" || job.status === "running") {
    buttons.push(el("button", { type: "button", class: "danger", onclick: () => act(job, "cancel"),
      disabled: job.cancel_requested, "aria-label": `Cancel ${job.title}` }, job.cancel_requested ? "Cancelling…" : "Cancel"));
  }
  if (job.status === "failed" || job.status === "cancelled") {
    buttons.push(el("button", { type: "button", onclick: () => act(job, "resume"), "aria-label": `Resume ${job.title}` },
      job.resumable ? "Resume" : "Run again"));
    buttons.push(el("button", { type: "button", class: "secondary", onclick: () => act(job, "retry"),
      "aria-label": `Retry ${job.title} from scratch` }, "Retry from scratch"));
    buttons.push(el("button", { type: "button", class: "secondary", onclick: () => act(job, "delete"),
      "aria-label": `Delete ${job.title}` }, "Delete"));
  }
  return el("li", { "data-job-id": job.id, "data-status": job.status },
    img,
    el("div", {},
      el("div", { class: "title" }, job.title, " ", el("span", { class: `badge ${job.status}` }, job.status),
        " ", el("span", { class: "meta" }, job.kind)),
      el("progress", { max: steps || 1, value: job.step || 0, "aria-label": `progress of ${job.title}` }),
      el("div", { class: "meta" }, parts.join(" · ")),
      job.error ? el("div", { class: "error-text" }, job.error) : null,
      el("a", { href: `/api/jobs/${job.id}/log`, class: "meta" }, "log")),
    el("div", { class: "actions" }, buttons));
}

function metricRows(m) {
  const rows = [];
  const add = (k, v) => rows.push(el("dt", {}, k), el("dd", {}, v));
  if (m.held_out_psnr !== undefined) add("held-out PSNR", `${m.held_out_psnr.toFixed(2)} dB`);
  if (m.held_out_ssim !== undefined) add("held-out SSIM", m.held_out_ssim.toFixed(3));
  if (m.fidelity_psnr !== undefined) add("fidelity", `${m.fidelity_psnr.toFixed(1)} dB, IoU ${(m.fidelity_iou ?? 0).toFixed(2)}`);
  if (m.num_faces !== undefined) add("faces", m.num_faces.toLocaleString());
  if (m.asset_bytes !== undefined) add("size", fmtBytes(m.asset_bytes));
  return rows;
}

function galleryItem(job) {
  const thumbRel = job.files.asset_preview || job.files.preview;
  const thumb = thumbRel
    ? el("img", { class: "thumb", src: fileUrl(job, thumbRel), alt: `preview of ${job.title}` })
    : el("div", { class: "thumb" });
  const links = [];
  if (job.files.asset) {
    links.push(el("a", { href: `/api/jobs/${job.id}/asset`, download: "" }, ".glb"));
    links.push(el("a", { href: `/api/jobs/${job.id}/gltf.zip`, download: "" }, ".gltf zip"));
  }
  links.push(el("a", { href: `/api/jobs/${job.id}/run.zip`, download: "" }, "run .zip"));
  if (job.files.turntable) links.push(el("a", { href: fileUrl(job, job.files.turntable) }, "turntable"));
  return el("li", { "data-job-id": job.id, "data-status": job.status },
    thumb,
    el("div", { class: "title" }, job.title),
    el("div", { class: "meta" }, `${job.kind} · ${new Date(job.finished_at * 1000).toLocaleString()}`),
    el("dl", {}, metricRows(job.metrics || {})),
    el("div", { class: "downloads" }, links),
    el("div", { class: "actions" },
      job.files.asset ? el("button", { type: "button", onclick: () => openViewer(job), "aria-label": `View ${job.title} in 3D` }, "View in 3D") : null,
      el("button", { type: "button", class: "secondary", onclick: () => act(job, "delete"), "aria-label": `Delete ${job.title}` }, "Delete")));
}

function render() {
  const all = [...jobs.values()].sort((a, b) => b.created_at - a.created_at);
  const queue = all.filter((j) => j.status !== "completed");
  const done = all.filter((j) => j.status === "completed");
  $("queue-list").replaceChildren(...queue.map(queueItem));
  $("queue-empty").hidden = queue.length > 0;
  $("gallery-list").replaceChildren(...done.map(galleryItem));
  $("gallery-empty").hidden = done.length > 0;
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    // keep keyboard focus on the same control across re-renders
    const active = document.activeElement;
    const key = active && active.closest("li[data-job-id]") ? [active.closest("li").dataset.jobId, active.getAttribute("aria-label")] : null;
    render();
    if (key) {
      const again = document.querySelector(`li[data-job-id="${key[0]}"] [aria-label="${CSS.escape(key[1] || "")}"]`);
      if (again) again.focus();
    }
  });
}

// ------------------------------------------------------------------ viewer
async function openViewer(job) {
  const panel = $("viewer-panel");
  panel.hidden = false;
  $("viewer-title").textContent = `Viewer: ${job.title}`;
  $("viewer-status").textContent = "loading…";
  try {
    if (!viewer) {
      const { AssetViewer } = await import("/static/viewer.js");
      viewer = new AssetViewer($("viewer"));
    }
    await viewer.load(`/api/jobs/${job.id}/asset`);
    $("viewer-status").textContent = `showing ${job.title}`;
    $("viewer").dataset.loaded = job.id;
    $("viewer").focus();
  } catch (e) {
    $("viewer-status").textContent = `could not show the asset: ${e.message}`;
  }
}

function closeViewer() {
  $("viewer-panel").hidden = true;
  if (viewer) viewer.clear();
  delete $("viewer").dataset.loaded;
}

// ------------------------------------------------------------------ live updates
async function refresh() {
  try {
    const data = await api("/api/jobs?limit=200");
    jobs.clear();
    for (const j of data.jobs) jobs.set(j.id, j);
    scheduleRender();
    showHealth(data.counts);
  } catch (e) {
    $("health").textContent = `offline: ${e.message}`;
  }
}

function showHealth(counts) {
  const c = counts || {};
  $("health").textContent = `${c.running || 0} running · ${c.queued || 0} queued · ${c.completed || 0} done`;
}

function listen() {
  const source = new EventSource("/api/events");
  source.addEventListener("job", (event) => {
    const job = JSON.parse(event.data);
    jobs.set(job.id, job);
    scheduleRender();
  });
  source.addEventListener("open", () => refresh());
  source.addEventListener("error", () => { $("health").textContent = "reconnecting…"; });
}

async function init() {
  $("generate-form").addEventListener("submit", submitGenerate);
  $("photos-form").addEventListener("submit", submitPhotos);
  $("viewer-close").addEventListener("click", closeViewer);
  try {
    const cfg = await api("/api/config");
    for (const id of ["g-preset", "r-preset"]) fillSelect($(id), cfg.presets);
    $("g-preset").value = "fast";
    $("r-preset").value = "fast";
    fillSelect($("data_format"), cfg.data_formats);
    if (cfg.priors.length) fillSelect($("prior"), cfg.priors.map((p) => p.id), cfg.priors.map((p) => p.name));
    else fillSelect($("prior"), [""], ["the service's default prior"]);
  } catch (e) {
    say(`Could not load the service's options: ${e.message}`, true);
  }
  await refresh();
  listen();
  setInterval(async () => {
    try { showHealth((await api("/api/health")).counts); } catch (e) { /* shown by refresh */ }
  }, 10000);
}

init();
