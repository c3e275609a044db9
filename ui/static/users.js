"use strict";
// Users (admins): add several at once; change role and email; reset a password; suspend, re-enable, delete.
(() => {
  const $ = (x) => document.getElementById(x);
  const roleSelect = (value, attrs = {}) => CM.el("select", attrs,
    ...Object.entries(CM.ROLE_LABELS).map(([v, label]) => CM.el("option", {value: v, selected: v === value}, label)));

  function newRow() {
    $("new-users").querySelector("tbody").append(CM.el("tr", {class: "new-user"},
      CM.el("td", {}, CM.el("input", {class: "new-username", "aria-label": "User name"})),
      CM.el("td", {}, CM.el("input", {class: "new-password", type: "text", autocomplete: "off", "aria-label": "Initial password"})),
      CM.el("td", {}, roleSelect("wrangler", {class: "new-role", "aria-label": "Role"})),
      CM.el("td", {}, CM.el("input", {class: "new-email", type: "email", "aria-label": "Email"})),
      CM.el("td", {}, CM.el("button", {type: "button", class: "secondary", text: "Remove",
                                       onclick: (e) => e.target.closest("tr").remove()}))));
  }

  $("add-row").addEventListener("click", newRow);
  $("add-users").addEventListener("submit", async (event) => {
    event.preventDefault();
    const users = [...document.querySelectorAll("tr.new-user")]
      .map((tr) => ({username: tr.querySelector(".new-username").value.trim(), password: tr.querySelector(".new-password").value,
                     role: tr.querySelector(".new-role").value, email: tr.querySelector(".new-email").value.trim() || null}))
      .filter((u) => u.username || u.password);
    const added = await CM.attempt(() => CM.api("POST", "/users", {users}), `Added ${users.length} user(s).`);
    if (added) { $("new-users").querySelector("tbody").replaceChildren(); newRow(); load(); }
  });

  function row(user) {
    const role = roleSelect(user.role, {class: "user-role", "aria-label": `Role of ${user.username}`});
    const email = CM.el("input", {type: "email", class: "user-email", value: user.email || "", "aria-label": `Email of ${user.username}`});
    const act = (label, cls, action, ok) => CM.el("button", {type: "button", class: cls, text: label,
      onclick: async () => { if (await CM.attempt(action, ok) !== undefined) load(); }});
    return CM.el("tr", {class: "user", dataset: {username: user.username}},
      CM.el("td", {}, user.username),
      CM.el("td", {}, role), CM.el("td", {}, email),
      CM.el("td", {}, CM.el("span", {class: "badge " + user.password_strength}, user.password_strength),
            user.admin_assigned ? CM.el("span", {class: "badge admin-assigned", title: "The user has not chosen their own password yet"}, " admin assigned") : ""),
      CM.el("td", {class: "status"}, user.active ? "active" : "suspended"),
      CM.el("td", {},
        act("Save", "secondary save", () => CM.api("PATCH", `/users/${user.id}`, {role: role.value, email: email.value.trim() || null}), `Saved ${user.username}.`),
        act("Reset password", "secondary reset", async () => {
          const password = prompt(`New password for ${user.username} (they must change it at their next sign-in):`);
          if (!password) return undefined;
          return CM.api("POST", `/users/${user.id}/password`, {password});
        }, `Password of ${user.username} reset.`),
        user.active ? act("Suspend", "secondary suspend", () => CM.api("POST", `/users/${user.id}/suspend`), `${user.username} suspended.`)
                    : act("Re-enable", "secondary enable", () => CM.api("POST", `/users/${user.id}/enable`), `${user.username} re-enabled.`),
        act("Delete", "danger delete", async () => {
          if (!confirm(`Delete ${user.username}?`)) return undefined;
          return CM.api("DELETE", `/users/${user.id}`);
        }, `${user.username} deleted.`)));
  }

  async function load() {
    const users = await CM.attempt(() => CM.api("GET", "/users"));
    if (users) $("users").querySelector("tbody").replaceChildren(...users.map(row));
  }
  newRow();
  load();
})();
