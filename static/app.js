/* Small behaviours of the pages. Kept in a static file: the Content-Security-Policy forbids
   inline scripts. htmx and its ws extension do the live updates; this only keeps the page tidy
   around them. */
(function () {
  "use strict";

  var FEED_MAX = 40;
  var openDetails = [];
  var logAtBottom = true;

  function setLive(on) {
    var dot = document.getElementById("live-status");
    if (dot) dot.classList.toggle("on", on);
  }

  function eventLog() {
    return document.getElementById("event-log");
  }

  function scrollLogToBottom() {
    var log = eventLog();
    if (log) log.scrollTop = log.scrollHeight;
  }

  // A message about what the visitor just did ("Killed worker-1 at …") is true when shown, but a
  // live page moves on under it: let it go after a while instead of leaving it up for good.
  var FLASH_SECONDS = 12;
  function fadeFlashes() {
    if (!document.querySelector("[ws-connect]")) return;
    window.setTimeout(function () {
      document.querySelectorAll(".flash").forEach(function (flash) {
        flash.classList.add("fading");
        window.setTimeout(function () { flash.remove(); }, 700);
      });
    }, FLASH_SECONDS * 1000);
  }

  document.addEventListener("DOMContentLoaded", scrollLogToBottom);
  document.addEventListener("DOMContentLoaded", fadeFlashes);
  document.addEventListener("htmx:wsOpen", function () { setLive(true); });
  document.addEventListener("htmx:wsClose", function () { setLive(false); });

  // A redraw replaces the step table: remember which outputs were open, and reopen them after.
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var open = document.querySelectorAll("details[data-keep][open]");
    openDetails = Array.prototype.map.call(open, function (d) { return d.getAttribute("data-keep"); });
    var log = eventLog();
    logAtBottom = !log || log.scrollHeight - log.scrollTop - log.clientHeight < 32;
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    openDetails.forEach(function (key) {
      var details = document.querySelector('details[data-keep="' + key + '"]');
      if (details) details.open = true;
    });
    var feed = document.getElementById("event-feed");
    while (feed && feed.children.length > FEED_MAX) feed.removeChild(feed.lastElementChild);
    if (logAtBottom) scrollLogToBottom();
  });
})();
