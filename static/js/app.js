// Progressive enhancements shared by every page. Pages work without it.
(function () {
  "use strict";

  // Language menu submits itself.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Ask before destructive buttons.
  document.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  // On a slow mobile connection people tap "Register" again while the first
  // request is still on its way; ignore the repeat taps instead of sending
  // them. The button is not disabled, so it stays focusable and announced.
  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("aria-busy") === "true") { event.preventDefault(); return; }
      form.setAttribute("aria-busy", "true");
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.setAttribute("aria-disabled", "true");
      });
    });
  });
  // A page restored from the back/forward cache keeps the busy mark; clear it.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[aria-busy]").forEach(function (form) {
      form.removeAttribute("aria-busy");
      form.querySelectorAll("[aria-disabled]").forEach(function (b) { b.removeAttribute("aria-disabled"); });
    });
  });

  // A form sent back with errors reloads at the top of the page; on a phone
  // the registration form is far below, so bring the first problem into view
  // and put the cursor there.
  var firstError = document.querySelector("form [aria-invalid='true'], form .has-error, form .form-errors");
  if (firstError) {
    var target = firstError.matches("input, select, textarea") ? firstError
      : firstError.querySelector("input:not([type=hidden]), select, textarea");
    firstError.scrollIntoView({ block: "center" });
    if (target) { target.focus({ preventScroll: true }); }
  }

  // Show the viewer's own local time beside the event's when the zones differ.
  var viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var lang = document.documentElement.lang || undefined;
  var offsetOf = function (zone, date) {
    return new Intl.DateTimeFormat("en", { timeZone: zone, timeZoneName: "longOffset" })
      .formatToParts(date).find(function (p) { return p.type === "timeZoneName"; }).value;
  };
  document.querySelectorAll("time.session-time[data-zone]").forEach(function (el) {
    var eventZone = el.getAttribute("data-zone");
    if (!viewerZone || viewerZone === eventZone) { return; }
    var start = new Date(el.getAttribute("datetime"));
    var end = new Date(el.getAttribute("data-end"));
    try {
      if (offsetOf(viewerZone, start) === offsetOf(eventZone, start)) { return; }
    } catch (e) {
      return; // an engine without "longOffset": keep the event's time alone
    }
    var fmt = new Intl.DateTimeFormat(lang, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false,
    });
    var endFmt = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false });
    var label = el.getAttribute("data-local-label");
    var local = document.createElement("span");
    local.className = "local-time";
    local.textContent = (label ? label + " " : "") + fmt.format(start) + "–" + endFmt.format(end) +
      " (" + viewerZone + ")";
    el.insertAdjacentElement("afterend", local);
  });

  // Background work (organiser pages): follow a job until it finishes, then
  // show the page again with its outcome (a download, counts).
  var followed = document.querySelectorAll("[data-job-status]:not([data-finished])");
  followed.forEach(function (box) {
    var bar = box.querySelector("progress");
    var state = box.querySelector("[data-job-state]");
    var count = box.querySelector("[data-job-count]");
    var poll = function () {
      fetch(box.getAttribute("data-job-status"), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) {
          if (!status) { window.setTimeout(poll, 5000); return; }
          bar.value = status.percent;
          state.textContent = status.state_label;
          state.className = "status-pill status-job-" + status.state;
          count.textContent = status.total === null ? (status.done || "") : status.done + " / " + status.total;
          if (status.mail) {
            Object.keys(status.mail).forEach(function (key) {
              document.querySelectorAll("[data-mail='" + key + "']").forEach(function (el) {
                el.textContent = status.mail[key];
              });
            });
          }
          // Shown again once finished, with its outcome; then only the
          // e-mail counts move, until none is waiting.
          if (status.finished && !box.hasAttribute("data-job-was-finished")) {
            window.location.reload();
            return;
          }
          if (status.following) { window.setTimeout(poll, 1500); }
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    };
    window.setTimeout(poll, 1000);
  });
})();
