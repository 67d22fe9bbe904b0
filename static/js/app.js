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

  // Show the viewer's own local time beside the event's when the zones differ.
  var viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var lang = document.documentElement.lang || undefined;
  document.querySelectorAll("time.session-time[data-zone]").forEach(function (el) {
    var eventZone = el.getAttribute("data-zone");
    if (!viewerZone || viewerZone === eventZone) { return; }
    var start = new Date(el.getAttribute("datetime"));
    var end = new Date(el.getAttribute("data-end"));
    var offsetOf = function (zone, date) {
      return new Intl.DateTimeFormat("en", { timeZone: zone, timeZoneName: "longOffset" })
        .formatToParts(date).find(function (p) { return p.type === "timeZoneName"; }).value;
    };
    if (offsetOf(viewerZone, start) === offsetOf(eventZone, start)) { return; }
    var fmt = new Intl.DateTimeFormat(lang, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false,
    });
    var endFmt = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hour12: false });
    var local = document.createElement("span");
    local.className = "local-time";
    local.textContent = fmt.format(start) + "–" + endFmt.format(end) + " (" + viewerZone + ")";
    el.insertAdjacentElement("afterend", local);
  });
})();
