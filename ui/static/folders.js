"use strict";
// S3 folders (admins): add, edit, remove, and which users may use each one.
(() => {
  const $ = (x) => document.getElementById(x);
  let users = [], accessTypes = {};

  function access() { return document.querySelector('input[name="access"]:checked').value; }
  function showKeys() {
    $("key-fields").classList.toggle("hidden", access() === "role");
    $("token-field").classList.toggle("hidden", access() !== "temporary");
  }
  document.querySelectorAll('input[name="access"]').forEach((r) => r.addEventListener("change", showKeys));

  function fill(folder) {
    $("folder-id").value = folder ? folder.id : "";
    $("folder-form-title").textContent = folder ? `Edit ${folder.name}` : "Add a folder";
    $("folder-name").value = folder ? folder.name : "";
    $("folder-bucket").value = folder ? folder.bucket : "";
    $("folder-region").value = folder ? folder.region : "us-east-1";
    $("folder-prefix").value = folder ? folder.prefix : "";
    $("folder-endpoint").value = folder && folder.endpoint_url ? folder.endpoint_url : "";
    $("access-" + (folder ? folder.access_type : "role")).checked = true;
    $("folder-key-id").value = folder && folder.access_key_id ? folder.access_key_id : "";
    $("folder-secret").value = "";
    $("folder-token").value = "";
    $("secret-hint").hidden = !(folder && folder.has_secret);
    showKeys();
  }

  $("reset-folder").addEventListener("click", () => fill(null));
  $("folder-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const id = $("folder-id").value;
    const body = {name: $("folder-name").value.trim(), bucket: $("folder-bucket").value.trim(), region: $("folder-region").value,
                  prefix: $("folder-prefix").value.trim(), endpoint_url: $("folder-endpoint").value.trim() || null,
                  access_type: access(), access_key_id: $("folder-key-id").value.trim() || null,
                  secret_access_key: $("folder-secret").value || null, session_token: $("folder-token").value || null};
    $("save-folder").disabled = true;
    const saved = await CM.attempt(() => id ? CM.api("PUT", `/folders/${id}`, body) : CM.api("POST", "/folders", body),
                                   `Folder ${body.name} saved.`);
    $("save-folder").disabled = false;
    if (saved) { fill(null); load(); }
  });

  async function grantsCell(folder) {
    const granted = new Set((await CM.api("GET", `/folders/${folder.id}/grants`)).users);
    const boxes = users.filter((u) => u.role !== "admin").map((u) => CM.el("label", {class: "inline"},
      CM.el("input", {type: "checkbox", value: u.id, checked: granted.has(u.id), class: "grant",
                      dataset: {username: u.username}}), " " + u.username + " "));
    const save = CM.el("button", {type: "button", class: "secondary save-grants", text: "Save access",
      onclick: async () => {
        const chosen = [...save.parentNode.querySelectorAll("input.grant:checked")].map((i) => Number(i.value));
        await CM.attempt(() => CM.api("PUT", `/folders/${folder.id}/grants`, {users: chosen}), `Access to ${folder.name} saved.`);
      }});
    return CM.el("td", {}, boxes.length ? boxes : CM.el("span", {class: "hint"}, "No non-admin users yet. "), boxes.length ? save : "",
                 CM.el("div", {class: "hint"}, "Admins may use every folder."));
  }

  async function load() {
    users = await CM.attempt(() => CM.api("GET", "/users")) || [];
    const folders = await CM.attempt(() => CM.api("GET", "/folders")) || [];
    const rows = await Promise.all(folders.map(async (f) => CM.el("tr", {class: "folder", dataset: {name: f.name}},
      CM.el("td", {}, f.name), CM.el("td", {}, `s3://${f.bucket}/${f.prefix}`, f.endpoint_url ? CM.el("div", {class: "hint"}, f.endpoint_url) : ""),
      CM.el("td", {}, f.region), CM.el("td", {}, accessTypes[f.access_type] || f.access_type, f.access_key_id ? CM.el("div", {class: "hint"}, f.access_key_id) : ""),
      await grantsCell(f),
      CM.el("td", {}, CM.el("button", {type: "button", class: "secondary", text: "Edit", onclick: () => fill(f)}),
            CM.el("button", {type: "button", class: "danger", text: "Remove", onclick: async () => {
              if (!confirm(`Remove folder ${f.name}? Jobs already created keep running.`)) return;
              if (await CM.attempt(() => CM.api("DELETE", `/folders/${f.id}`), `Folder ${f.name} removed.`) !== undefined) load();
            }})))));
    $("folders").querySelector("tbody").replaceChildren(...rows);
  }

  (async () => {
    fill(null);
    const found = await CM.attempt(() => CM.api("GET", "/regions"));
    if (found) {   // the user may have started typing: keep what they chose
      const chosen = $("folder-region").value || "us-east-1";
      accessTypes = found.access_types;
      $("folder-region").replaceChildren(...found.regions.map((r) => CM.el("option", {value: r, selected: r === chosen}, r)));
    }
    load();
  })();
})();
