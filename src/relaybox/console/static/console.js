// relaybox console: live updates. The server sends an event named "change" whenever the store
// changed; every element marked hx-trigger="rb-change from:body" then re-fetches itself.
(function () {
  "use strict";
  if (!window.EventSource || !window.htmx) {
    return;
  }
  var source = new EventSource("/events");
  source.addEventListener("change", function () {
    document.body.setAttribute("data-live-version", String(Date.now()));
    htmx.trigger(document.body, "rb-change");
  });
  source.addEventListener("open", function () {
    document.body.setAttribute("data-live", "on");
  });
  source.addEventListener("error", function () {
    document.body.setAttribute("data-live", "reconnecting");
  });
})();
