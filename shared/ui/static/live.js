// sftpilot dashboard: keep a job page current without a reload.
// Polls the small JSON endpoint named by <main data-live>; when the record changed, fetches the
// page again (same URL, same credentials) and swaps <main>. Stops once the job has settled.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.live) { return; }
  var url = main.dataset.live;
  var seen = main.dataset.stamp || null;
  var timer = null;
  function swap() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) { return; }
        main.innerHTML = fresh.innerHTML;
        main.dataset.live = fresh.dataset.live || "";
        main.dataset.stamp = fresh.dataset.stamp || "";
        if (!fresh.dataset.live) { stop(); }
      });
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) { return; }
        var stamp = state.updated_at + "|" + state.status;
        if (seen === null) { seen = stamp; return; }
        if (stamp !== seen) { seen = stamp; return swap(); }
      })
      .catch(function () { /* transient: try again at the next tick */ });
  }
  function stop() { if (timer) { clearInterval(timer); timer = null; } }
  main.setAttribute("data-live-active", "1");
  poll();
  timer = setInterval(poll, 3000);
})();
