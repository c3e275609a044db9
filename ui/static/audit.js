"use strict";
// Audit log (admins): sign-ins, user and folder changes, job actions.
(() => {
  const $ = (x) => document.getElementById(x);
  async function load() {
    const q = new URLSearchParams();
    if ($("audit-action").value.trim()) q.set("action", $("audit-action").value.trim());
    if ($("audit-actor").value.trim()) q.set("actor", $("audit-actor").value.trim());
    const events = await CM.attempt(() => CM.api("GET", "/audit?" + q));
    if (events) $("audit").querySelector("tbody").replaceChildren(...events.map((e) => CM.el("tr", {class: "audit-event"},
      CM.el("td", {}, CM.when(e.at)), CM.el("td", {}, e.actor || "system"), CM.el("td", {}, e.action),
      CM.el("td", {}, e.target || ""), CM.el("td", {}, e.detail || ""), CM.el("td", {}, e.address || ""))));
  }
  $("audit-filter").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
})();
