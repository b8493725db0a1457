/* WhatsApp Campaigns dashboard: confirmations, the template picker, the browser's timezone,
 * and live refresh of the parts of a page marked data-part. Plain JavaScript, no library;
 * pages work without it (forms post, Refresh reloads). */
(function () {
  "use strict";

  // Destructive actions ask first: <form data-confirm="...">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // One click, one request.
    var buttons = form.querySelectorAll("button[type=submit]");
    window.setTimeout(function () {
      buttons.forEach(function (b) { b.disabled = true; });
    }, 0);
  });

  // Template picker: show the chosen template's status, variables and body.
  document.querySelectorAll("select[data-template-picker]").forEach(function (select) {
    function show() {
      document.querySelectorAll(".template-info").forEach(function (info) {
        info.hidden = info.getAttribute("data-template-key") !== select.value;
      });
    }
    select.addEventListener("change", show);
    show();
  });

  // A new campaign's timezone defaults to the browser's.
  document.querySelectorAll("input[data-detect-timezone]").forEach(function (input) {
    if (input.value) return;
    try {
      input.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (e) {
      input.value = "UTC";
    }
  });

  // Live refresh: fetch the container's data-live-url and swap every [data-part] by id, while
  // #live-state says data-live="1". The actions part is kept while its buttons are the same,
  // so that a reason being typed is not lost.
  function swapParts(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("[data-part][id]").forEach(function (fresh) {
      var current = document.getElementById(fresh.id);
      if (!current) return;
      var signature = fresh.getAttribute("data-signature");
      if (signature !== null && signature === current.getAttribute("data-signature")) return;
      current.replaceWith(document.importNode(fresh, true));
    });
  }

  function isLive() {
    var state = document.getElementById("live-state");
    return !!state && state.getAttribute("data-live") === "1";
  }

  document.querySelectorAll("[data-live-url]").forEach(function (container) {
    var url = container.getAttribute("data-live-url");
    var toggle = document.getElementById(container.getAttribute("data-toggle") || "");
    var failures = 0;

    function next() {
      // The page says how often: every 2 s while sending, less often otherwise.
      var state = document.getElementById("live-state");
      var interval = parseInt((state && state.getAttribute("data-interval")) || "3000", 10);
      window.setTimeout(refresh, interval * Math.min(1 + failures, 10));
    }

    function refresh() {
      if (!isLive()) return;
      if (document.hidden || (toggle && !toggle.checked)) { next(); return; }
      fetch(url, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { "X-Requested-With": "fetch" }
      }).then(function (response) {
        if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      }).then(function (html) {
        failures = 0;
        swapParts(html);
        container.setAttribute("data-refreshed", String(Date.now()));
        next();
      }).catch(function () {
        failures += 1;
        next();
      });
    }

    next();
  });
})();
