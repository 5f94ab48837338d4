// relaybox console: live updates. The server sends an event named "change" whenever the store
// changed; every element marked hx-trigger="rb-change from:body" then re-fetches itself.
(function () {
  "use strict";
  if (!window.EventSource || !window.htmx) {
    return;
  }
  var source = null;

  function open() {
    source = new EventSource("/events");
    source.addEventListener("change", function () {
      htmx.trigger(document.body, "rb-change");
    });
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live", "on");
    });
    source.addEventListener("error", function () {
      document.body.setAttribute("data-live", "reconnecting");
    });
  }

  // A page left for another (or kept in the back/forward cache) must not hold its stream:
  // browsers allow only six connections per server, and a seventh page would wait for one.
  window.addEventListener("pagehide", function () {
    if (source) {
      source.close();
      source = null;
    }
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted || !source) {
      open();
      htmx.trigger(document.body, "rb-change");
    }
  });
  if (!source) {
    open();
  }
})();
