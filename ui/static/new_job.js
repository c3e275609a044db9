"use strict";
// New Job: the user's folders as a lazily loaded tree; drag a sub-folder onto a
// folder (or pick and drop with the keyboard, or use the form) to open the job dialog.
(() => {
  const $ = (x) => document.getElementById(x);
  const tree = $("tree");
  const dialog = $("job-dialog");
  let folders = [], picked = null, pending = null, estimateAsked = 0;

  const location = (spot) => `folder:${spot.folder.name}/${spot.path}`;
  const leaf = (path) => path.replace(/\/$/, "").split("/").pop();

  function node(folder, path, title) {
    const spot = {folder, path};
    const children = CM.el("ul", {class: "tree", hidden: true});
    const toggle = CM.el("button", {type: "button", class: "toggle", "aria-label": "Open " + title, text: "▸"});
    const label = CM.el("span", {class: "label", tabindex: "0", draggable: "true", role: "treeitem",
                                 dataset: {folder: folder.name, path}}, title);
    const item = CM.el("li", {class: "node"}, toggle, label, children);
    let loaded = false, open = false;

    async function expand(show) {
      open = show === undefined ? !open : show;
      toggle.textContent = open ? "▾" : "▸";
      children.hidden = !open;
      if (open && !loaded) { loaded = true; await more(children, folder, path, null); }
    }
    toggle.addEventListener("click", () => expand());
    label.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-cloudmover", JSON.stringify({folder: folder.id, path}));
      e.dataTransfer.effectAllowed = "copyMove";
    });
    label.addEventListener("dragover", (e) => { e.preventDefault(); label.classList.add("drop-target"); });
    label.addEventListener("dragleave", () => label.classList.remove("drop-target"));
    label.addEventListener("drop", (e) => {
      e.preventDefault();
      label.classList.remove("drop-target");
      const from = JSON.parse(e.dataTransfer.getData("application/x-cloudmover") || "null");
      if (from) openDialog({folder: folders.find((f) => f.id === from.folder), path: from.path}, spot);
    });
    label.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight") expand(true);
      else if (e.key === "ArrowLeft") expand(false);
      else if (e.key === " ") { e.preventDefault(); pick(spot, label); }
      else if (e.key === "Enter" && picked) openDialog(picked.spot, spot);
      else if (e.key === "Enter") expand();
      else if (e.key === "Escape") pick(null, null);
    });
    return item;
  }

  async function more(list, folder, path, token) {
    const page = await CM.attempt(() => CM.api("GET",
      `/folders/${folder.id}/browse?path=${encodeURIComponent(path)}` + (token ? `&token=${encodeURIComponent(token)}` : "")));
    if (!page) return;
    for (const sub of page.folders) list.append(node(folder, sub, leaf(sub) + "/"));
    if (page.objects.length) {
      const total = page.objects.reduce((n, o) => n + o.size, 0);
      list.append(CM.el("li", {class: "objects"}, `${page.objects.length} object(s), ${CM.bytes(total)}`));
    }
    if (!page.folders.length && !page.objects.length && !token) list.append(CM.el("li", {class: "objects"}, "(empty)"));
    if (page.next) {
      const button = CM.el("button", {type: "button", class: "secondary", text: "More…"});
      const item = CM.el("li", {}, button);
      button.addEventListener("click", async () => { item.remove(); await more(list, folder, path, page.next); });
      list.append(item);
    }
  }

  function pick(spot, label) {
    document.querySelectorAll(".label.picked").forEach((l) => l.classList.remove("picked"));
    picked = spot ? {spot} : null;
    if (label) label.classList.add("picked");
    CM.notice(spot ? `Picked ${location(spot)}: now focus the target folder and press Enter.` : "");
  }

  function openDialog(source, target) {
    if (!source || !source.folder) return;
    pick(null, null);
    const name = source.path ? leaf(source.path) : source.folder.name;
    pending = {source, target};
    $("job-name").value = `Copy ${name} to ${target.folder.name}`;
    $("job-source").value = location(source);
    $("job-destination").value = location({folder: target.folder, path: target.path + (source.path ? leaf(source.path) + "/" : "")});
    $("op-copy").checked = true;
    $("job-sync").checked = false;
    dialog.showModal();
    estimate();
    preflight();
  }

  async function estimate() {
    const mine = ++estimateAsked;
    $("estimate").textContent = "Estimating…";
    try {
      const found = await CM.api("POST", "/jobs/estimate", {source: $("job-source").value,
        recursive: $("job-recursive").checked, tier: $("job-tier").value, codec: $("job-codec").value,
        destination: $("job-destination").value});
      if (mine !== estimateAsked) return;
      const exact = found.exact ? "" : "about ";
      let text = `${exact}${found.objects} object(s), ${exact}${CM.bytes(found.bytes)}`;
      if (found.duration_seconds !== undefined && found.duration_seconds !== null)
        text += `; about ${CM.duration(found.duration_seconds)}`;
      if (found.cost_usd !== undefined && found.cost_usd !== null) text += `, about $${found.cost_usd.toFixed(2)}`;
      $("estimate").textContent = "Estimate: " + text;
    } catch (error) {
      if (mine === estimateAsked) $("estimate").textContent = "No estimate: " + error.message;
    }
  }
  async function preflight() {
    const list = $("preflight");
    list.replaceChildren(CM.el("li", {class: "hint"}, "Checking…"));
    try {
      const checks = await CM.api("POST", "/jobs/preflight", {source: $("job-source").value,
        destination: $("job-destination").value, tier: $("job-tier").value, codec: $("job-codec").value});
      list.replaceChildren(...checks.map((c) => CM.el("li", {class: c.ok ? (c.warning ? "check warning" : "check ok") : "check failed"},
        (c.ok ? (c.warning ? "⚠ " : "✓ ") : "✗ ") + c.message)));
    } catch (error) {
      list.replaceChildren(CM.el("li", {class: "check failed"}, "✗ " + error.message));
    }
  }
  ["job-recursive", "job-tier", "job-codec"].forEach((x) => $(x).addEventListener("change", estimate));
  ["job-tier", "job-codec"].forEach((x) => $(x).addEventListener("change", preflight));

  $("job-name").form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {name: $("job-name").value, source: $("job-source").value, destination: $("job-destination").value,
                  move: $("op-move").checked, recursive: $("job-recursive").checked, sync: $("job-sync").checked,
                  tier: $("job-tier").value,
                  codec: $("job-codec").value,
                  notify: [...document.querySelectorAll("#notify-list input:checked")].map((i) => i.value)};
    $("submit-job").disabled = true;
    const job = await CM.attempt(() => CM.api("POST", "/jobs", body));
    $("submit-job").disabled = false;
    if (job) { dialog.close(); window.location = "/"; }
    else dialog.close();   // the notice above the tree says why
  });
  $("cancel-dialog").addEventListener("click", () => dialog.close());

  $("plain-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const byId = (id) => folders.find((f) => String(f.id) === id);
    const clean = (p) => p.trim().replace(/^\/+/, "");
    const sourcePath = clean($("plain-source-path").value);
    let targetPath = clean($("plain-destination-path").value);
    if (targetPath && !targetPath.endsWith("/")) targetPath += "/";
    openDialog({folder: byId($("plain-source-folder").value), path: sourcePath && !sourcePath.endsWith("/") ? sourcePath + "/" : sourcePath},
               {folder: byId($("plain-destination-folder").value), path: targetPath});
  });

  async function recipients() {
    let people = [];
    try { people = await CM.api("GET", "/recipients"); } catch (error) { return; }
    const withMail = people.filter((p) => p.has_email);
    if (!withMail.length) return;
    $("notify-list").replaceChildren(...withMail.map((p) => CM.el("label", {class: "inline"},
      CM.el("input", {type: "checkbox", value: p.username, checked: p.username === CM.me.username}), " " + p.username)));
  }

  async function start() {
    folders = await CM.attempt(() => CM.api("GET", "/folders")) || [];
    $("no-folders").hidden = folders.length > 0;
    tree.replaceChildren(...folders.map((f) => node(f, "", f.name)));
    for (const select of [$("plain-source-folder"), $("plain-destination-folder")])
      select.replaceChildren(...folders.map((f) => CM.el("option", {value: f.id}, f.name)));
    recipients();
  }
  start();
})();
