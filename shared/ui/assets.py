"""The dashboard's only assets, kept in Python so every packaging (wheel, deploy/gcp/package.py,
which ships ``.py`` files) carries them: one stylesheet and one small script, served from
``/ui/static/``. No web fonts, no CDN.
"""

from __future__ import annotations

APP_CSS = """\
/* sftpilot dashboard: one small stylesheet, no web fonts, no external assets. */
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #202124; background: #fff; }
header { background: #202124; color: #fff; padding: 10px 20px; }
header a.brand { color: #fff; font-weight: 600; text-decoration: none; margin-right: 12px; }
header .crumb { color: #bdc1c6; }
main { padding: 16px 20px 40px; max-width: 1400px; }
h1 { font-size: 22px; margin: 4px 0 12px; }
h2 { font-size: 17px; margin: 22px 0 8px; border-bottom: 1px solid #e8eaed; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e8eaed; vertical-align: top; }
th { background: #f8f9fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 12px; max-width: 420px; }
pre.config { max-width: none; background: #f8f9fa; padding: 10px; }
code { font-size: 12px; word-break: break-all; }
.muted { color: #5f6368; }
.error { color: #c5221f; }
.error-box { border-left: 4px solid #d93025; padding-left: 10px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.green { background: #e6f4ea; color: #137333; }
.badge.red { background: #fce8e6; color: #c5221f; }
.badge.amber { background: #fef7e0; color: #b06000; }
.badge.blue { background: #e8f0fe; color: #1967d2; }
.badge.grey { background: #f1f3f4; color: #3c4043; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 6px 0; }
dl.facts dt { color: #5f6368; }
dl.facts dd { margin: 0; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline li { padding: 3px 0; border-left: 2px solid #dadce0; padding-left: 10px; }
ol.timeline .when { color: #5f6368; font-variant-numeric: tabular-nums; margin-right: 6px; }
ul.checks { list-style: none; padding: 0; margin: 0; }
ul.checks li.ok { color: #137333; }
ul.checks li.bad { color: #c5221f; }
form.filters { margin: 8px 0 12px; }
form.filters input, form.filters select, button { font: inherit; padding: 3px 6px; }
button.danger { background: #d93025; color: #fff; border: 0; border-radius: 4px; padding: 6px 14px; cursor: pointer; }
svg.chart { display: block; margin: 8px 0; max-width: 100%; height: auto; }
svg .chart-title { font-size: 13px; font-weight: 600; fill: #202124; }
svg .tick, svg .legend { font-size: 11px; fill: #5f6368; }
.live-note { color: #1967d2; font-size: 12px; }
"""

LIVE_JS = """\
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
"""

ASSETS: dict[str, tuple[str, str]] = {
    "app.css": ("text/css; charset=utf-8", APP_CSS),
    "live.js": ("text/javascript; charset=utf-8", LIVE_JS),
}
"""File name -> (content type, text)."""
