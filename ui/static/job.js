"use strict";
// One job: options, timings, per-object errors and warnings, log; cancel and retry.
(() => {
  const id = document.getElementById("job-card").dataset.jobId;
  const $ = (x) => document.getElementById(x);
  let finishedShown = false;

  function rows(table, pairs) {
    table.replaceChildren(...pairs.map(([k, v]) => CM.el("tr", {}, CM.el("th", {}, k), CM.el("td", {}, v))));
  }

  async function refresh() {
    let job;
    try { job = await CM.api("GET", `/jobs/${id}`); } catch (error) { CM.notice(error.message, "error"); return; }
    const p = Jobs.progress(job);
    $("job-card").className = "card job " + job.state;
    $("job-name").textContent = job.name;
    $("job-state").textContent = CM.STATE_LABELS[job.state] || job.state;
    $("job-error").hidden = !job.error;
    $("job-error").textContent = job.error || "";
    $("job-bar").replaceChildren(Jobs.bar(p.fraction));
    $("job-stats").replaceChildren(Jobs.stats(job, p));
    const o = job.options;
    rows($("job-options"), [["Source", job.source_url], ["Destination", job.destination_url],
      ["Operation", o.move ? "Move" : "Copy"], ["Recurse into sub-folders", o.recursive ? "yes" : "no"],
      ["Only missing or changed (sync)", o.sync ? "yes" : "no"], ["Delivery", o.tier],
      ["Image codec", o.codec || "none"], ["Region", job.region], ["Submitted by", job.submitted_by || "–"],
      ["Notify", (o.notify || []).join(", ") || "nobody"]]);
    rows($("job-timings"), [["Created", CM.when(job.created_at)], ["Started", CM.when(job.started_at)],
      ["Finished", CM.when(job.finished_at)], ["Objects copied", job.objects_done],
      ["Already present (skipped)", job.objects_skipped], ["Failed", job.objects_failed],
      ["Sources deleted (move)", job.objects_deleted], ["Bytes copied", CM.bytes(job.bytes_done)],
      ["Retries", job.retries], ["Bytes saved by the codec", CM.bytes(job.bytes_saved)],
      ...(job.usage ? [["EC2 instance-hours used", `${job.usage.instance_hours.toFixed(2)} (about $${job.usage.cost.toFixed(2)})`]] : [])]);
    const cancel = $("cancel-button"), retry = $("retry-button");
    if (cancel) cancel.hidden = Jobs.FINISHED.has(job.state);
    if (retry) retry.hidden = !(Jobs.FINISHED.has(job.state) && job.objects_failed > 0);
    const finished = Jobs.FINISHED.has(job.state);
    if (!finished || !finishedShown) {   // once finished, one last look at failures and log is enough
      await Promise.all([failures(), log()]);
      finishedShown = finished;
    }
  }

  async function failures() {
    const found = await CM.api("GET", `/jobs/${id}/failures?limit=1000`);
    $("no-failures").hidden = found.length > 0;
    $("failures").hidden = found.length === 0;
    $("failures").querySelector("tbody").replaceChildren(...found.map((f) =>
      CM.el("tr", {class: "failure"}, CM.el("td", {}, f.key),
            CM.el("td", {}, f.kind === "delete" ? "warning: source kept" : "error: not copied"),
            CM.el("td", {class: "reason"}, f.reason))));
  }

  async function log() {
    const lines = await CM.api("GET", `/jobs/${id}/log?limit=1000`);
    $("job-log").textContent = lines.map((l) => `${CM.when(l.at)}  ${l.level.padEnd(7)}  ${l.message}`).join("\n");
  }

  const cancel = $("cancel-button"), retry = $("retry-button");
  if (cancel) cancel.addEventListener("click", async () => {
    if (!confirm("Cancel this job? Tasks already running finish; nothing new starts.")) return;
    await CM.attempt(() => CM.api("POST", `/jobs/${id}/cancel`), "Job cancelled.");
    refresh();
  });
  if (retry) retry.addEventListener("click", async () => {
    await CM.attempt(() => CM.api("POST", `/jobs/${id}/retry`), "Retrying the failed objects.");
    finishedShown = false;
    refresh();
  });
  refresh();
  setInterval(refresh, 1000);
})();
