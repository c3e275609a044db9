"use strict";
// Backup (admins): download an encrypted backup; upload one to restore. Both send files,
// not JSON, so they call fetch themselves (with the page's CSRF token); the staged
// restore is read and cancelled through CM.api.
(() => {
  const $ = (x) => document.getElementById(x);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function failure(response) {
    const data = await response.json().catch(() => ({}));
    if (data && typeof data.message === "string") return data.message;
    if (response.status === 413) return "The file is larger than this server accepts.";
    return `The request failed (HTTP ${response.status}).`;
  }

  function showStaged(state) {
    const staged = state && state.staged;
    $("restore-staged").hidden = !staged;
    if (!staged) return;
    const m = staged.manifest, t = m.tables || {};
    $("restore-staged-text").textContent =
      `Staged by ${staged.actor || "the operator"} at ${CM.when(staged.staged_at)}: the backup ` +
      `${staged.source} made ${CM.when(m.created_at)} by CloudMover ${m.cloudmover_version} ` +
      `(${t.user || 0} users, ${t.folder || 0} folders, ${t.job || 0} jobs). It is restored when the server ` +
      `restarts.`;
  }

  $("backup-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const passphrase = $("backup-passphrase").value;
    if (passphrase !== $("backup-passphrase-again").value) {
      CM.notice("The two passphrases differ.", "error");
      return;
    }
    const button = $("backup-download");
    button.disabled = true;
    CM.notice("Making the backup…", "ok");
    try {
      const response = await fetch("/api/v1/backup", {
        method: "POST", credentials: "same-origin",
        headers: {"X-CSRFToken": csrf, "Content-Type": "application/json"},
        body: JSON.stringify({passphrase})});
      if (!response.ok) throw new Error(await failure(response));
      const blob = await response.blob();
      const name = (/filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "") || [])[1]
        || "cloudmover-backup.cmbackup";
      const link = CM.el("a", {href: URL.createObjectURL(blob), download: name, hidden: true});
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      $("backup-passphrase").value = $("backup-passphrase-again").value = "";
      CM.notice(`Backup downloaded as ${name} (${CM.bytes(blob.size)}). Keep its passphrase apart from it.`, "ok");
    } catch (error) {
      CM.notice(error.message, "error");
    } finally {
      button.disabled = false;
    }
  });

  $("restore-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("restore-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("backup", file, file.name);
    if ($("restore-passphrase").value) form.append("passphrase", $("restore-passphrase").value);
    const button = $("restore-upload");
    button.disabled = true;
    CM.notice("Uploading and checking the backup…", "ok");
    try {
      const response = await fetch("/api/v1/restore", {
        method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": csrf, "Accept": "application/json"},
        body: form});
      if (!response.ok) throw new Error(await failure(response));
      const state = await response.json();
      showStaged(state);
      $("restore-passphrase").value = "";
      CM.notice(state.message, "ok");
    } catch (error) {
      CM.notice(error.message, "error");
    } finally {
      button.disabled = false;
    }
  });

  $("restore-cancel").addEventListener("click", async () => {
    const done = await CM.attempt(() => CM.api("DELETE", "/restore"),
                                  "The staged restore is cancelled: the server keeps its database.");
    if (done !== undefined) showStaged(null);
  });

  (async () => { showStaged(await CM.attempt(() => CM.api("GET", "/restore"))); })();
})();
