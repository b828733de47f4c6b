// The console's only script of its own (no inline script: the pages' CSP allows 'self' only).
// 1. Every request htmx sends carries the session's CSRF token (the forms carry it as a field).
// 2. Elements marked data-poll reload every few seconds, only while the tab is visible, and at
//    once when it becomes visible again: an open but hidden tab costs the API nothing.
// 3. A form marked data-confirm asks first (deleting a job).
(function () {
  "use strict";
  var POLL_MS = 3000;

  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = token();
  });

  function poll() {
    if (document.visibilityState !== "visible" || !window.htmx) {
      return;
    }
    document.querySelectorAll("[data-poll]").forEach(function (element) {
      window.htmx.trigger(element, "poll");
    });
  }

  setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", poll);

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
