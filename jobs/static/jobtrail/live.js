/* Jobtrail staff console: the Pause/Resume toggle of the live regions (htmx polling).
 *
 * A live region is an element with data-jt-live; while something is moving the server renders
 * it with hx-get/hx-trigger="every Ns", and each answer replaces it (so polling stops by itself
 * once the server renders it without them). Paused (localStorage, so it holds across pages and
 * reloads), every poll is cancelled before it is sent and counted in data-jt-skipped.
 * No inline code anywhere: the pages run under script-src 'self'.
 */
(function () {
  "use strict";
  var KEY = "jobtrail.live.paused";

  function paused() {
    try { return window.localStorage.getItem(KEY) === "1"; } catch (e) { return false; }
  }

  function setPaused(value) {
    try { window.localStorage.setItem(KEY, value ? "1" : "0"); } catch (e) { /* private mode */ }
  }

  function render() {
    var isPaused = paused();
    document.querySelectorAll(".jt-live-toggle").forEach(function (button) {
      button.textContent = isPaused ? "Resume auto-refresh" : "Pause auto-refresh";
      button.setAttribute("aria-pressed", isPaused ? "true" : "false");
    });
    document.querySelectorAll("[data-jt-live]").forEach(function (region) {
      region.classList.toggle("jt-live-paused", isPaused);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".jt-live-toggle") : null;
    if (!button) { return; }
    event.preventDefault();
    var nowPaused = !paused();
    setPaused(nowPaused);
    render();
    if (!nowPaused && window.htmx) {
      document.querySelectorAll("[data-jt-live][hx-get]").forEach(function (region) {
        window.htmx.trigger(region, "jt:resume");
      });
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var region = event.detail && event.detail.elt;
    if (region && region.hasAttribute("data-jt-live") && paused()) {
      event.preventDefault();
      region.setAttribute("data-jt-skipped", String((Number(region.getAttribute("data-jt-skipped")) || 0) + 1));
    }
  });

  document.addEventListener("htmx:afterSettle", render);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", render);
  } else {
    render();
  }
})();
