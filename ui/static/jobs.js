"use strict";
// A job's progress as the dashboard and the job page show it: fraction, rate and ETA.
const Jobs = (() => {
  const FINISHED = new Set(["complete", "complete_with_warnings", "failed", "cancelled"]);
  const seen = new Map();   // job id -> {at, bytes}: the rate comes from successive polls

  function progress(job) {
    const objects = job.objects_done + job.objects_skipped + job.objects_failed;
    let fraction = job.bytes_total ? job.bytes_done / job.bytes_total : (job.objects_total ? objects / job.objects_total : 0);
    if (job.state === "complete" || job.state === "complete_with_warnings") fraction = 1;
    fraction = Math.max(0, Math.min(1, fraction));
    const now = Date.now() / 1000;
    let rate = 0;
    const started = job.started_at ? Date.parse(job.started_at + "Z") / 1000 : null;
    const ended = job.finished_at ? Date.parse(job.finished_at + "Z") / 1000 : now;
    if (started && ended > started) rate = job.bytes_done / (ended - started);
    const before = seen.get(job.id);
    if (before && !FINISHED.has(job.state) && now - before.at >= 2) {
      rate = Math.max(0, (job.bytes_done - before.bytes) / (now - before.at)) || rate;
      seen.set(job.id, {at: now, bytes: job.bytes_done});
    } else if (!before) seen.set(job.id, {at: now, bytes: job.bytes_done});
    const left = job.bytes_total - job.bytes_done;
    const eta = FINISHED.has(job.state) ? 0 : (rate > 0 && job.planning_done ? left / rate : NaN);
    return {fraction, objects, rate, eta};
  }

  function bar(fraction) {
    const inner = CM.el("div", {role: "presentation"});
    inner.style.width = (fraction * 100).toFixed(1) + "%";   // CSSOM, not an inline style attribute
    return CM.el("div", {class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                         "aria-valuenow": (fraction * 100).toFixed(0)}, inner);
  }

  function stats(job, p) {
    return CM.el("div", {class: "stats"},
      CM.el("span", {class: "objects-count"}, `${p.objects} / ${job.objects_total}${job.planning_done ? "" : "+"} objects`),
      CM.el("span", {}, `${CM.bytes(job.bytes_done)} / ${CM.bytes(job.bytes_total)}`),
      CM.el("span", {}, `${CM.bytes(p.rate)}/s`),
      CM.el("span", {}, FINISHED.has(job.state) ? "" : `ETA ${CM.duration(p.eta)}`),
      job.objects_failed ? CM.el("span", {class: "failed-count"}, `${job.objects_failed} failed`) : null);
  }

  return {progress, bar, stats, FINISHED};
})();
