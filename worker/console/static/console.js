// Keeps the figures of a console page current: polls the page's JSON endpoint and puts each value
// into the element marked data-live="<key>". A close run whose status changes is reloaded whole
// (its approval panel or outcome appears). No library, no build step.
(function () {
  "use strict";
  var root = document.querySelector("[data-live-url]");
  if (!root) { return; }
  var url = root.getAttribute("data-live-url");
  var every = 5000;

  function apply(values) {
    Object.keys(values).forEach(function (key) {
      document.querySelectorAll('[data-live="' + key.replace(/"/g, '\\"') + '"]').forEach(function (el) {
        if (el.textContent !== String(values[key])) { el.textContent = String(values[key]); }
      });
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) { return; }
        if (data.at) { apply({ at: data.at }); }
        if (data.values) {
          var before = root.getAttribute("data-status");
          if (before !== null && data.values.status !== undefined && data.values.status !== before) {
            window.location.reload();
            return;
          }
          apply(data.values);
        }
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
})();
