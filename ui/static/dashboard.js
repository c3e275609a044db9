"use strict";
// One box per job, refreshed every second without reloading the page.
(() => {
  const RECENT_SECONDS = 300;   // a job that just finished stays a while, so its end is seen
  const box = document.getElementById("jobs");
  const showAll = document.getElementById("show-all");
  showAll.checked = localStorage.getItem("cm-show-all") === "1";
  showAll.addEventListener("change", () => { localStorage.setItem("cm-show-all", showAll.checked ? "1" : "0"); refresh(); });

  function card(job) {
    const p = Jobs.progress(job);
    return CM.el("article", {class: "job " + job.state, tabindex: "0", dataset: {jobId: job.id},
                             onclick: () => { window.location = "/jobs/" + job.id; },
                             onkeydown: (e) => { if (e.key === "Enter") window.location = "/jobs/" + job.id; }},
      CM.el("h2", {}, job.name),
      CM.el("div", {}, CM.el("span", {class: "state"}, CM.STATE_LABELS[job.state] || job.state),
            ` · ${job.options.move ? "Move" : "Copy"} · ${job.options.tier}`,
            job.submitted_by ? ` · by ${job.submitted_by}` : ""),
      Jobs.bar(p.fraction), Jobs.stats(job, p));
  }

  async function refresh() {
    try {
      const jobs = await CM.api("GET", "/jobs?" + (showAll.checked ? "all=true" : "all=false&finished_within=" + RECENT_SECONDS));
      box.replaceChildren(...jobs.map(card));
      document.getElementById("no-jobs").hidden = jobs.length > 0;
      CM.notice("");
    } catch (error) {
      CM.notice("Could not refresh the jobs: " + error.message, "error");
    }
  }
  refresh();
  setInterval(refresh, 1000);
})();
