"use strict";
// Change password, with zxcvbn's strength estimate (from the head node) shown while typing.
(() => {
  const input = document.getElementById("new-password");
  const bar = document.getElementById("strength-bar");
  const label = document.getElementById("strength-label");
  const hint = document.getElementById("strength-hint");
  let timer = null, asked = 0;

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(rate, 150);
  });

  async function rate() {
    const mine = ++asked;
    if (!input.value) { bar.className = "strength"; label.textContent = "Strength: –"; hint.textContent = ""; return; }
    const found = await CM.attempt(() => CM.api("POST", "/password-strength", {password: input.value}));
    if (!found || mine !== asked) return;   // a later keystroke overtook this answer
    bar.className = "strength " + found.label;
    label.textContent = "Strength: " + found.label;
    hint.textContent = [found.warning, ...(found.suggestions || [])].filter(Boolean).join(" ");
  }

  document.getElementById("password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (input.value !== document.getElementById("repeat").value) {
      CM.notice("The two new passwords differ.", "error");
      return;
    }
    const done = await CM.attempt(() => CM.api("POST", "/me/password",
      {current: document.getElementById("current").value, new: input.value}));
    if (done) window.location = "/";
  });

  document.getElementById("token-button").addEventListener("click", async () => {
    const issued = await CM.attempt(() => CM.api("POST", "/me/token"), "New API token created; copy it now.");
    if (issued) document.getElementById("token-value").textContent = issued.token;
  });
})();
