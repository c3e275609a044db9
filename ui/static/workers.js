"use strict";
// Workers per region: state, last heartbeat, throughput; refreshed every few seconds.
(() => {
  const SILENT_SECONDS = 60;
  async function refresh() {
    const workers = await CM.attempt(() => CM.api("GET", "/workers"));
    if (!workers) return;
    const regions = new Map();
    for (const w of workers) (regions.get(w.region) || regions.set(w.region, []).get(w.region)).push(w);
    const now = Date.now();
    document.getElementById("no-workers").hidden = workers.length > 0;
    document.getElementById("regions").replaceChildren(...[...regions].map(([region, list]) => CM.el("section", {class: "card region"},
      CM.el("h2", {}, `${region}: ${list.filter((w) => w.state !== "stopping").length} running`),
      CM.el("table", {}, CM.el("thead", {}, CM.el("tr", {}, ...["Worker", "State", "Last heartbeat", "Tasks", "Bytes", "Throughput"].map((h) => CM.el("th", {}, h)))),
        CM.el("tbody", {}, ...list.map((w) => {
          const silent = now - Date.parse(w.last_seen + "Z") > SILENT_SECONDS * 1000;
          return CM.el("tr", {class: "worker"}, CM.el("td", {}, w.worker_id), CM.el("td", {}, silent ? `silent (${w.state})` : w.state),
            CM.el("td", {}, CM.when(w.last_seen)), CM.el("td", {}, w.tasks_done), CM.el("td", {}, CM.bytes(w.bytes_done)),
            CM.el("td", {}, CM.bytes(w.bytes_per_second) + "/s"));
        }))))));
  }
  refresh();
  setInterval(refresh, 3000);
})();
