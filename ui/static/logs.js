"use strict";
// Job logs (admins): filter by job, level and text; download what the filter shows.
(() => {
  const $ = (x) => document.getElementById(x);
  function query() {
    const q = new URLSearchParams();
    if ($("log-job").value) q.set("job", $("log-job").value);
    if ($("log-level").value) q.set("level", $("log-level").value);
    if ($("log-text").value) q.set("contains", $("log-text").value);
    return q;
  }
  async function load() {
    const q = query();
    const csv = new URLSearchParams(q); csv.set("format", "csv"); csv.set("limit", "10000");
    $("log-download").href = "/api/v1/logs?" + csv;
    const lines = await CM.attempt(() => CM.api("GET", "/logs?" + q));
    if (lines) $("logs").querySelector("tbody").replaceChildren(...lines.map((l) => CM.el("tr", {class: "log-line " + l.level},
      CM.el("td", {}, CM.when(l.at)), CM.el("td", {}, CM.el("a", {href: `/jobs/${l.job}`}, l.job)),
      CM.el("td", {}, l.level), CM.el("td", {}, l.message))));
  }
  $("log-filter").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
})();
