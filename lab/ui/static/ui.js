// ibcm-lab training console. Hand-written, no build step, no library, nothing loaded from
// elsewhere. Builds the switches from /api/setup, keeps the ccmsetup line and the topology
// up to date through /api/preview, and reads /api/connect's event stream (Server-Sent Events
// over a fetch() body) to draw each step as the lab finishes it.
"use strict";

const state = {
  setup: null,        // /api/setup
  switches: {},       // key -> value
  source: "switches", // or "file"
  scene: null,        // the preset last chosen (a number), or null
  fix: null,          // {changes, label} offered by the last verdict
  running: false,
  previewSeq: 0,
  lastStep: null,     // the timeline entry of the step shown last
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function modelTag(text) {
  return el("span", { class: "tag model", text });
}

// A code (error) with what docs/reference.md says of it.
function codeNodes(code) {
  if (!code) return [];
  const out = [el("code", { text: code.name })];
  if (code.code && code.code !== code.name) out.push(" ", el("code", { text: code.code }));
  if (code.kind === "lab") out.push(" ", modelTag("lab label, not a Windows code"));
  else if (code.verified === false) out.push(" ", modelTag("lab's model [I]"));
  return out;
}

// -- the switches ---------------------------------------------------------------------------

function buildControls(setup) {
  const form = $("switches");
  for (const group of setup.groups) {
    const fieldset = el("fieldset", { id: `group-${group.key}` }, el("legend", { text: group.legend }));
    for (const sw of setup.switches.filter((s) => s.group === group.key)) {
      const id = `sw-${sw.key}`;
      if (sw.checkbox) {
        const other = sw.values.find((v) => v.value !== sw.checkbox);
        const box = el("input", { type: "checkbox", id, name: sw.key,
          title: sw.values.map((v) => `${v.value}: ${v.label}`).join("; ") });
        box.addEventListener("change", () => {
          setSwitch(sw.key, box.checked ? sw.checkbox : other.value);
        });
        fieldset.append(el("div", { class: "field check" },
          el("label", { for: id }, box, el("span", { text: sw.title }))));
      } else {
        const select = el("select", { id, name: sw.key, "aria-describedby": `${id}-hint` },
          sw.values.map((v) => el("option", { value: v.value, text: v.value })));
        select.addEventListener("change", () => setSwitch(sw.key, select.value));
        fieldset.append(el("div", { class: "field" },
          el("label", { for: id, text: sw.title }), select,
          el("span", { class: "hint", id: `${id}-hint` })));
      }
    }
    form.append(fieldset);
  }
}

function switchDef(key) {
  return state.setup.switches.find((s) => s.key === key);
}

function showSwitches() {
  for (const [key, value] of Object.entries(state.switches)) {
    const sw = switchDef(key);
    const control = $(`sw-${key}`);
    if (sw.checkbox) control.checked = value === sw.checkbox;
    else control.value = value;
    const hint = $(`sw-${key}-hint`);
    const label = sw.values.find((v) => v.value === value);
    if (hint) hint.textContent = label ? label.label : "";
  }
  $("source-note").hidden = state.source !== "file";
  if (state.source === "file" && state.setup.file) {
    $("source-note").textContent = `Connect runs the scenario file ${state.setup.file.name} as `
      + "written (its own settings). Change a switch or choose a seed scene to use the switches.";
  }
  for (const button of document.querySelectorAll("#presets button")) {
    const scene = button.dataset.scene;
    const pressed = state.source === "file" ? scene === "file" : String(state.scene) === scene;
    button.setAttribute("aria-pressed", pressed ? "true" : "false");
  }
  sceneNote();
}

function sceneNote() {
  const note = $("scene-note");
  if (state.source === "file") {
    note.textContent = `Scenario file: ${state.setup.file.title}`;
    return;
  }
  const preset = state.setup.presets.find((p) => p.scene === state.scene);
  if (!preset) { note.textContent = ""; return; }
  const same = Object.entries(preset.switches).every(([k, v]) => state.switches[k] === v);
  note.textContent = `Scene ${preset.scene} (${preset.section}): ${preset.title}`
    + (same ? "" : " (switches changed since)");
}

function setSwitch(key, value) {
  state.switches[key] = value;
  state.source = "switches";
  offerFix(null);
  showSwitches();
  preview();
}

function choosePreset(scene) {
  if (state.running) return;
  if (scene === "file") {
    state.source = "file";
    state.scene = null;
  } else {
    const preset = state.setup.presets.find((p) => p.scene === scene);
    if (!preset) return;
    state.source = "switches";
    state.scene = scene;
    state.switches = { ...preset.switches };
  }
  offerFix(null);
  showSwitches();
  preview();
  clearRun("Press Connect to run this configuration.");
}

function buildPresets(setup) {
  const row = $("presets");
  if (setup.file) {
    const button = el("button", { type: "button", "data-scene": "file",
      title: setup.file.title }, `File: ${setup.file.name}`);
    button.addEventListener("click", () => choosePreset("file"));
    row.append(button);
  }
  for (const preset of setup.presets) {
    const button = el("button", { type: "button", "data-scene": preset.scene,
      title: `${preset.section}: ${preset.title}`,
      "aria-label": `Scene ${preset.scene}, ${preset.section}: ${preset.title}` },
    `${preset.scene} · ${preset.section.replace("seed ", "")}`);
    button.addEventListener("click", () => choosePreset(preset.scene));
    row.append(button);
  }
}

function body() {
  if (state.source === "file") return { source: "file" };
  return { source: "switches", switches: state.switches, scene: state.scene };
}

async function postJson(path, payload) {
  const response = await fetch(path, { method: "POST",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
  return response;
}

function showError(message) {
  const box = $("error");
  box.hidden = !message;
  box.textContent = message || "";
}

async function preview() {
  const seq = ++state.previewSeq;
  const response = await postJson("/api/preview", body());
  const data = await response.json();
  if (seq !== state.previewSeq) return; // a newer change is on its way
  if (!response.ok) { showError(data.error); return; }
  showError("");
  showDescription(data);
}

function showDescription(data) {
  const cmd = $("ccmsetup");
  cmd.replaceChildren(...data.ccmsetup.map((c) => el("div", {},
    data.ccmsetup.length > 1 ? el("span", { class: "client", text: `${c.client}> ` }) : null,
    c.line)));
  $("site-line").replaceChildren(
    el("b", { text: `Site ${data.site.code}: ` }),
    data.site.https_only ? "HTTPS only" : "HTTPS or HTTP",
    "; clients check the CRL for site systems: ",
    el("b", { text: data.site.check_crl ? "yes" : "no" }));
  showTopology(data.topology);
}

// -- the topology ---------------------------------------------------------------------------

function showTopology(topo) {
  const zones = $("zones");
  zones.replaceChildren(...topo.zones.map((zone) => el("div", {
    class: "zone" + (topo.client_zones.includes(zone.key) ? " here" : ""),
    id: `zone-${zone.key}`, "data-zone": zone.key },
  el("h3", { text: zone.title }),
  el("div", { class: "machines" },
    zone.machines.length ? zone.machines.map((m) => el("div", { class: `machine ${m.role}` },
      el("b", { text: m.title }),
      m.names.map((name) => el("div", { class: "names", text: name })),
      el("div", { class: "note", text: m.note })))
      : el("div", { class: "note", text: "nothing of this site" })))));
  const reach = $("reach");
  reach.tHead.replaceChildren(el("tr", {},
    el("th", { scope: "col", text: "name the client needs" }),
    topo.columns.map((c) => el("th", { scope: "col",
      class: topo.client_zones.includes(c.key) ? "here" : null,
      text: `from ${c.title}` + (topo.client_zones.includes(c.key) ? " (client)" : "") })),
    el("th", { scope: "col", text: "rule" })));
  reach.tBodies[0].replaceChildren(...topo.rows.map((r) => el("tr", {},
    el("td", { class: "target" }, el("b", { text: r.what }), el("br"), r.target),
    topo.columns.map((c) => el("td", { class: r.reach[c.key] ? "yes" : "no",
      text: r.reach[c.key] ? "✓ yes" : "✗ no" })),
    el("td", { text: r.why }))));
}

function markZone(zone) {
  for (const node of document.querySelectorAll(".zone")) {
    node.classList.toggle("active", node.dataset.zone === zone);
  }
}

// -- a run ------------------------------------------------------------------------------------

function clearRun(message) {
  $("timeline").replaceChildren();
  const verdict = $("verdict");
  verdict.className = "verdict idle";
  verdict.textContent = message;
  markZone(null);
}

function stepId(client, n) {
  return `step-${client}-${n}`.replace(/[^A-Za-z0-9_-]/g, "_");
}

function planStep(step) {
  const li = el("li", { class: "step pending", id: stepId(step.client, step.n) },
    el("h3", {}, `${step.client} · step ${step.n}: ${step.action} from the ${step.location} `,
      el("span", { class: "badge wait", text: "waiting" })));
  return li;
}

function renderStep(s) {
  const items = [];
  // name resolution
  if (s.resolution) {
    const r = s.resolution;
    items.push(el("li", {}, el("span", { class: "ev-label", text: "Name resolution: " }),
      el("code", { text: r.host }), ` from the ${r.zone}: `,
      r.resolves
        ? (r.answer ? el("span", { class: "good", text: `resolves (the lab's server at ${r.answer})` })
          : el("span", { class: "bad", text: `resolves, but nothing listens on port ${r.port}` }))
        : el("span", { class: "bad", text: "does not resolve" }),
      el("span", { text: ` (${r.why})` })));
  } else {
    items.push(el("li", {}, el("span", { class: "ev-label", text: "Connection: " }),
      "none: the step sent no request to an MP"));
  }
  // TLS handshake
  if (s.tls.kind === "https" && s.tls.handshake !== "none") {
    const li = el("li", {}, el("span", { class: "ev-label", text: "TLS handshake: " }),
      `with ${s.tls.host} `);
    if (s.tls.certificate) {
      const c = s.tls.certificate;
      li.append("· server certificate names ", el("code", { text: c.san.join(", ") || c.subject }),
        `, issued by ${c.issuer}, valid until ${c.not_after}`);
    } else {
      li.append(el("span", { class: "bad", text: "failed" }));
    }
    if (s.tls.openssl) {
      li.append(" · OpenSSL verify code ", el("code", { text: String(s.tls.openssl.verify_code) }),
        ` (${s.tls.openssl.verify_message}) · `,
        s.tls.openssl.agrees ? el("span", { class: "good", text: "judges agree" })
          : el("span", { class: "bad", text: "JUDGES DISAGREE" }));
    }
    items.push(li);
  } else if (s.tls.kind === "http") {
    items.push(el("li", {}, el("span", { class: "ev-label", text: "Plain HTTP: " }),
      `to ${s.tls.host} (no TLS, no server certificate)`));
  }
  // revocation
  if (s.crl.check !== null) {
    const li = el("li", {}, el("span", { class: "ev-label", text: "CRL check: " }),
      el("b", { text: s.crl.check ? "on" : "off" }), `, decided by ${s.crl.source}`);
    if (s.crl.options !== null) li.append(" · ", el("code", { text: `Options=${s.crl.options}` }),
      " ", modelTag("bit values: lab's model [I]"));
    if (s.crl.checked) li.append(" · result ", el("b", { text: s.crl.status }),
      ` after ${s.crl.seconds} s simulated`);
    if (s.urls.length) {
      li.append(el("table", { class: "urls" },
        el("thead", {}, el("tr", {}, ["#", "CDP URL tried", "result", "error", "simulated time"]
          .map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, s.urls.map((u, i) => el("tr", { class: `r-${u.result}` },
          el("td", { text: String(i + 1) }),
          el("td", { class: "url", text: u.url }),
          el("td", { class: "res", text: u.crl === "delta" ? `${u.result} (delta CRL)` : u.result }),
          el("td", {}, codeNodes(u.error), u.detail ? el("div", { text: u.detail }) : null),
          el("td", { text: `${u.seconds} s` }))))));
    }
    items.push(li);
  }
  // verdict
  const v = s.verdict;
  const verdictLi = el("li", {}, el("span", { class: "ev-label", text: "Verdict: " }),
    el("span", { class: s.outcome === "ok" ? "badge ok" : "badge fail",
      text: s.outcome === "ok" ? "ok" : "FAIL" }), " ");
  if (v.error) {
    verdictLi.append(...codeNodes(v.error), ` ${v.error.message}`);
    if (v.error.detail) verdictLi.append(el("div", { text: v.error.detail }));
  }
  const extra = [];
  if (v.winhttp) extra.push("WinHTTP ", ...codeNodes(v.winhttp));
  if (v.flags.length) extra.push(`, flags ${v.flags.join(", ")} (${v.flags_value})`);
  if (v.http_status) extra.push(extra.length ? " · " : "", `HTTP status ${v.http_status}`);
  if (extra.length) verdictLi.append(el("div", {}, ...extra));
  items.push(verdictLi);
  // CMTrace lines
  if (s.log.length) {
    items.push(el("li", {}, el("span", { class: "ev-label", text: "Log lines (as CMTrace shows them):" }),
      el("table", { class: "cmtrace" },
        el("thead", {}, el("tr", {}, ["type", "Log Text", "Component", "Date/Time", "Thread", "File"]
          .map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, s.log.map((line) => el("tr", { class: `t${line.type}`,
          "data-type": line.type },
        el("td", { text: line.letter, title: { 1: "information", 2: "warning", 3: "error" }[line.type] }),
        el("td", { class: "text", text: line.text }),
        el("td", { text: line.component }),
        el("td", { text: line.time }),
        el("td", { text: line.thread }),
        el("td", { text: line.file })))))));
  }
  if (s.trace) {
    const pre = el("pre", {});
    for (const line of s.trace.split("\n")) {
      pre.append(/^\s*Lab:/.test(line) ? el("span", { class: "labline", text: line }) : line, "\n");
    }
    items.push(el("li", {}, el("details", { class: "trace" },
      el("summary", { text: "Revocation trace in the shape of certutil -verify -urlfetch "
        + "(lines starting Lab: are the lab's, not certutil's)" }), pre)));
  }
  const words = el("li", {}, el("div", { class: "why" }, el("span", { class: "ev-label", text: "Why: " }),
    s.explanation));
  if (s.fix) words.append(el("div", { class: "fixtext" }, el("span", { class: "ev-label", text: "Fix: " }), s.fix));
  for (const note of s.notes) words.append(el("div", { class: "why" }, el("span", { class: "ev-label", text: "Note: " }), note));
  items.push(words);

  // A step that went well is folded (its summary says so); a failing one is open.
  const li = el("li", { class: `step ${s.outcome === "ok" ? "ok" : "fail"}`, id: stepId(s.client, s.n),
    "data-outcome": s.outcome },
  el("details", { open: s.outcome !== "ok" || (s.expected && !s.met) },
    el("summary", {}, el("h3", {}, `${s.client} · step ${s.n}: ${s.action}${s.automatic ? " (automatic, ccmexec start-up)" : ""} from the ${s.location} `,
      el("span", { class: s.outcome === "ok" ? "badge ok" : "badge fail",
        text: s.outcome === "ok" ? "ok" : "FAIL" }),
      ` (${s.seconds} s simulated)`,
      s.expected ? el("span", { text: ` · expected ${s.expected}: ${s.met ? "met" : "NOT met"}` }) : null)),
    el("ol", { class: "events" }, items)));
  return li;
}

function showVerdict(v) {
  const box = $("verdict");
  box.className = `verdict ${v.passed ? "pass" : "fail"}`;
  const parts = [];
  if (v.passed) {
    parts.push(el("span", { class: "big", text: "CONNECTED: every step ok" }),
      el("p", { text: `${v.steps} steps, ${v.simulated} s simulated, ${v.wall} s real.` }));
  } else {
    const f = v.failure;
    const big = el("span", { class: "big" }, "FAILED: ");
    if (f.error) {
      big.append(el("span", { class: "code", text: f.error.name }));
      if (f.error.code && f.error.code !== f.error.name) big.append(" ", el("span", { class: "code", text: f.error.code }));
    }
    parts.push(big);
    if (f.error && f.error.kind === "lab") parts.push(modelTag("lab label, not a Windows code"));
    else if (f.error && f.error.verified === false) parts.push(modelTag("lab's model [I]"));
    const detail = [`${f.client}, step ${f.n}: ${f.action} from the ${f.location}`];
    if (f.winhttp) detail.push(`WinHTTP ${f.winhttp.name} ${f.winhttp.code || ""}`.trim());
    if (f.flags.length) detail.push(`flags ${f.flags.join(", ")}`);
    if (f.http_status) detail.push(`HTTP ${f.http_status}`);
    parts.push(el("p", { text: detail.join(" · ") }));
    if (f.fix) parts.push(el("p", { class: "fixtext" }, el("b", { text: "Fix: " }), f.fix));
  }
  if (v.expectations) {
    parts.push(el("p", { text: `Expectations of the scenario file: ${v.expectations.met} of `
      + `${v.expectations.total} met.` }));
  }
  if (v.faults.length) parts.push(el("p", { text: `Fault knobs on: ${v.faults.join(", ")}` }));
  box.replaceChildren(...parts);
  offerFix(v.fix_switches);
}

function offerFix(fix) {
  state.fix = fix;
  $("fix").disabled = !fix || state.running;
  $("fix-what").textContent = fix ? `The fix: ${fix.label}` : "";
}

function handleEvent(event, data) {
  const timeline = $("timeline");
  if (event === "start") {
    showDescription(data);
    if (data.refusal) {
      timeline.append(el("li", { class: "step fail" }, el("h3", { text: "PKI" }),
        el("p", { text: `The CA refused the MP certificate: ${data.refusal}` })));
    }
    timeline.append(...data.plan.map(planStep));
    state.lastStep = null;
    $("status").textContent = `Run ${data.run}: running ${data.plan.length} steps…`;
  } else if (event === "step-start") {
    const li = $(stepId(data.client, data.n));
    if (li) {
      li.className = "step running";
      li.querySelector(".badge").textContent = "running";
    }
    markZone(data.location);
  } else if (event === "step") {
    const li = $(stepId(data.client, data.n));
    const node = renderStep(data);
    // An automatic step (ccmexec's work after an install) has no planned place: it goes
    // right after the step shown before it.
    if (li) li.replaceWith(node);
    else if (state.lastStep && state.lastStep.isConnected) state.lastStep.after(node);
    else timeline.append(node);
    state.lastStep = node;
  } else if (event === "verdict") {
    markZone(null);
    showVerdict(data);
    $("status").textContent = data.passed ? "Done: connected." : "Done: failed.";
  } else if (event === "error") {
    showError(data.message);
  }
}

async function connect() {
  if (state.running) return;
  state.running = true;
  $("connect").disabled = true;
  $("connect").setAttribute("aria-busy", "true");
  offerFix(null);
  showError("");
  clearRun("Running…");
  $("verdict").className = "verdict running";
  $("status").textContent = "Connecting…";
  try {
    const response = await postJson("/api/connect", body());
    if (!response.ok) {
      const data = await response.json();
      showError(data.error);
      clearRun("Not run: fix the input above.");
      $("status").textContent = "";
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) handleEvent(event, JSON.parse(data.join("\n")));
      }
    }
  } catch (error) {
    showError(`The console did not answer: ${error}`);
  } finally {
    state.running = false;
    $("connect").disabled = false;
    $("connect").removeAttribute("aria-busy");
    offerFix(state.fix);
  }
}

async function applyFix() {
  if (!state.fix || state.running) return;
  Object.assign(state.switches, state.fix.changes);
  state.source = "switches";
  offerFix(null);
  showSwitches();
  await preview();
  await connect();
}

function shortcuts(event) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  if (target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement
      || (target instanceof HTMLInputElement && target.type !== "checkbox")) return;
  const key = event.key.toLowerCase();
  if (key === "c") { event.preventDefault(); connect(); }
  else if (key === "f") { event.preventDefault(); applyFix(); }
  else if (/^[1-9]$/.test(key)) { event.preventDefault(); choosePreset(Number(key)); }
}

async function start() {
  const response = await fetch("/api/setup");
  const setup = await response.json();
  state.setup = setup;
  state.switches = { ...setup.defaults };
  state.source = setup.initial;
  $("version").textContent = `ibcm-lab ${setup.version}`;
  buildControls(setup);
  buildPresets(setup);
  $("connect").addEventListener("click", connect);
  $("fix").addEventListener("click", applyFix);
  $("switches").addEventListener("submit", (e) => e.preventDefault());
  document.addEventListener("keydown", shortcuts);
  showSwitches();
  await preview();
  document.body.dataset.ready = "true";
}

start().catch((error) => showError(`The page could not start: ${error}`));
