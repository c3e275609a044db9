"use strict";
// Notifications (admins): the outgoing mail server and a test message. The password is
// write-only: the API says only whether one is stored.
(() => {
  const $ = (x) => document.getElementById(x);
  const PORTS = {none: 25, starttls: 587, tls: 465};

  function show(settings) {
    $("mail-host").value = settings.host;
    $("mail-security").value = settings.security;
    $("mail-port").value = settings.configured ? settings.port : "";
    $("mail-port").placeholder = PORTS[settings.security];
    $("mail-username").value = settings.username;
    $("mail-password").value = "";
    $("mail-password").placeholder = settings.has_password ? "stored: leave empty to keep it" : "";
    $("mail-sender").value = settings.sender;
    $("mail-state").textContent = settings.configured
      ? `Saved: ${settings.host}:${settings.port} (${settings.security}), ` +
        (settings.username ? `user ${settings.username}${settings.has_password ? ", password stored" : ""}` : "no sign-in") +
        `, from ${settings.sender}.`
      : "Not configured yet: nobody is emailed until these settings are saved.";
  }

  $("mail-security").addEventListener("change", () => { $("mail-port").placeholder = PORTS[$("mail-security").value]; });

  $("mail-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const port = $("mail-port").value.trim();
    const body = {host: $("mail-host").value.trim(), security: $("mail-security").value,
                  port: port ? Number(port) : null, username: $("mail-username").value.trim(),
                  sender: $("mail-sender").value.trim()};
    if ($("mail-password").value) body.password = $("mail-password").value;
    const saved = await CM.attempt(() => CM.api("PUT", "/mail-settings", body), "Mail settings saved.");
    if (saved) show(saved);
  });

  $("mail-test-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("mail-test");
    button.disabled = true;
    CM.notice("Sending…", "ok");
    try {
      const sent = await CM.attempt(() => CM.api("POST", "/mail-settings/test", {to: $("mail-test-to").value.trim()}));
      if (sent) CM.notice(`Test message sent to ${sent.sent_to}.`, "ok");
    } finally {
      button.disabled = false;
    }
  });

  (async () => {
    const settings = await CM.attempt(() => CM.api("GET", "/mail-settings"));
    if (settings) show(settings);
  })();
})();
