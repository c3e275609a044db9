// Shared by every page: calls to the REST API (with this page's CSRF token),
// small DOM helpers, and number formatting. Pages add their own script.
"use strict";

const CM = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function api(method, path, body) {
    const options = {method, headers: {"X-CSRFToken": csrf, "Accept": "application/json"},
                     credentials: "same-origin"};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch("/api/v1" + path, options);
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401) { window.location = "/signin?next=" + encodeURIComponent(location.pathname); }
      throw new Error(messageOf(data, response.status));
    }
    return data;
  }

  function messageOf(data, status) {
    if (data && data.message && typeof data.message === "string") return data.message;
    if (data && data.errors) {   // marshmallow field errors
      const parts = [];
      for (const [where, fields] of Object.entries(data.errors)) {
        for (const [field, problems] of Object.entries(fields)) parts.push(`${field}: ${[].concat(problems).join(" ")}`);
      }
      if (parts.length) return parts.join("; ");
    }
    return `The request failed (HTTP ${status}).`;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function notice(message, kind = "ok") {
    const box = document.getElementById("notice");
    box.textContent = message;
    box.className = "notice " + kind;
    box.hidden = !message;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function duration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return "–";
    seconds = Math.round(seconds);
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${s} s` : `${s} s`;
  }

  function when(iso) { return iso ? new Date(iso + (iso.endsWith("Z") ? "" : "Z")).toLocaleString() : "–"; }

  const STATE_LABELS = {queued: "Queued", planning: "Planning", running: "Running", complete: "Complete",
                        complete_with_warnings: "Complete with warnings", failed: "Failed", cancelled: "Cancelled"};
  const ROLE_LABELS = {admin: "Admin", wrangler: "Wrangler", viewer: "View Only"};

  // Run `action`, show its error (or `success`) in the notice box; returns the action's result.
  async function attempt(action, success) {
    try {
      const result = await action();
      if (success && result !== undefined) notice(success, "ok");   // undefined: the user backed out
      return result;
    } catch (error) {
      notice(error.message, "error");
      return undefined;
    }
  }

  const me = {role: document.body.dataset.role, username: document.body.dataset.user};
  return {api, el, notice, bytes, duration, when, attempt, me, STATE_LABELS, ROLE_LABELS};
})();
