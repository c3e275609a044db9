"use strict";
// Worker settings per region (admins): where workers run and how they reach the head node.
(() => {
  const $ = (x) => document.getElementById(x);
  $("settings-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const region = $("ws-region").value;
    const saved = await CM.attempt(() => CM.api("PUT", `/worker-settings/${region}`,
      {vpc_id: $("ws-vpc").value.trim(), subnet_id: $("ws-subnet").value.trim(), head_node_path: $("ws-path").value}),
      `Worker settings of ${region} saved.`);
    if (saved) load();
  });

  async function load() {
    const all = await CM.attempt(() => CM.api("GET", "/worker-settings")) || [];
    $("settings").querySelector("tbody").replaceChildren(...all.map((s) => CM.el("tr", {class: "region-settings"},
      CM.el("td", {}, s.region), CM.el("td", {}, s.vpc_id), CM.el("td", {}, s.subnet_id),
      CM.el("td", {}, s.head_node_path + " IP"), CM.el("td", {}, CM.when(s.updated_at)),
      CM.el("td", {}, CM.el("button", {type: "button", class: "secondary", text: "Edit", onclick: () => {
          $("ws-region").value = s.region; $("ws-vpc").value = s.vpc_id; $("ws-subnet").value = s.subnet_id; $("ws-path").value = s.head_node_path;
        }}),
        CM.el("button", {type: "button", class: "danger", text: "Remove", onclick: async () => {
          if (await CM.attempt(() => CM.api("DELETE", `/worker-settings/${s.region}`), `Removed ${s.region}.`) !== undefined) load();
        }})))));
  }
  (async () => {
    const found = await CM.attempt(() => CM.api("GET", "/regions"));
    if (found) $("ws-region").replaceChildren(...found.regions.map((r) => CM.el("option", {value: r}, r)));
    load();
  })();
})();
