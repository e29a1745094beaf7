/* Staff portal: small progressive enhancements, no build step.
   - the schedule refreshes its rows every few seconds (WebSockets will replace this polling);
   - the schedule form's patient search narrows the patient list;
   - forms with data-confirm ask first; the call id can be copied.
   Every network failure is handled quietly: nothing here may throw into the console. */
(function () {
  "use strict";

  var REFRESH_MS = 5000;

  function timeNow() {
    return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  /* --- schedule rows ------------------------------------------------------------------- */

  function focusKey(container) {
    var active = document.activeElement;
    if (!active || !container.contains(active)) return null;
    return active.getAttribute("href");
  }

  function restoreFocus(container, key) {
    if (!key) return;
    var links = container.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("href") === key) {
        links[i].focus();
        return;
      }
    }
  }

  function startRefresh(container) {
    var url = container.getAttribute("data-refresh-url");
    var status = document.getElementById(container.getAttribute("data-refresh-status"));
    var last = container.innerHTML;
    var busy = false;
    var stopped = false;

    function setStatus(text) {
      if (status) status.textContent = text;
    }

    function tick() {
      if (stopped || busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.redirected || response.status === 401 || response.status === 403) {
            // Signed out elsewhere: stop, and say so instead of showing stale data quietly.
            stopped = true;
            setStatus("Automatic updates stopped: please reload the page.");
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null || html === undefined) return;
          if (html !== last) {
            var key = focusKey(container);
            container.innerHTML = html;
            last = container.innerHTML;
            restoreFocus(container, key);
          }
          setStatus("Updated " + timeNow());
        })
        .catch(function () {
          setStatus("Could not update; retrying…");
        })
        .then(function () {
          busy = false;
        });
    }

    setInterval(tick, REFRESH_MS);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) tick();
    });
  }

  /* --- patient search on the schedule form --------------------------------------------- */

  function startPatientSearch(box) {
    var select = document.getElementById(box.getAttribute("data-select"));
    var input = box.querySelector("input[type=search]");
    var status = box.querySelector("[role=status]");
    var tzNote = document.getElementById("patient-tz");
    var url = box.getAttribute("data-search-url");
    if (!select || !input) return;
    box.hidden = false;
    var timer = null;
    var seq = 0;

    function showZone() {
      if (!tzNote) return;
      var option = select.options[select.selectedIndex];
      var zone = option && option.getAttribute("data-tz");
      tzNote.textContent = zone ? "Patient's time zone: " + zone : "";
    }

    function fill(results) {
      var chosen = select.value;
      var keep = chosen ? select.querySelector('option[value="' + CSS.escape(chosen) + '"]') : null;
      while (select.options.length > 1) select.remove(1);
      var seen = {};
      results.forEach(function (p) {
        var option = document.createElement("option");
        option.value = String(p.id);
        option.textContent = p.email ? p.name + " (" + p.email + ")" : p.name;
        if (p.time_zone) option.setAttribute("data-tz", p.time_zone);
        select.appendChild(option);
        seen[option.value] = true;
      });
      if (keep && !seen[chosen]) select.insertBefore(keep, select.options[1] || null);
      if (chosen) select.value = chosen;
      if (results.length === 1 && !chosen) {
        select.value = String(results[0].id);
        showZone();
      }
      status.textContent = results.length
        ? results.length + (results.length === 1 ? " patient found." : " patients found.")
        : "No patient found.";
    }

    function search() {
      var mine = ++seq;
      fetch(url + "?q=" + encodeURIComponent(input.value.trim()), { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (mine === seq) fill(data.results || []);
        })
        .catch(function () {
          status.textContent = "Search is not available right now.";
        });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(search, 250);
    });
    input.addEventListener("keydown", function (event) {
      // Enter searches now instead of submitting the whole form.
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(timer);
        search();
      }
    });
    select.addEventListener("change", showZone);
  }

  /* --- confirmations and copying ------------------------------------------------------- */

  function startConfirm(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  function startCopy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard || !window.isSecureContext) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard
        .writeText(source.textContent.trim())
        .then(function () {
          button.textContent = "Copied";
        })
        .catch(function () {
          button.textContent = "Copy failed";
        })
        .then(function () {
          setTimeout(function () {
            button.textContent = "Copy";
          }, 2000);
        });
    });
  }

  function start() {
    document.querySelectorAll("[data-refresh-url]").forEach(startRefresh);
    document.querySelectorAll(".patient-search[data-search-url]").forEach(startPatientSearch);
    document.querySelectorAll("form[data-confirm]").forEach(startConfirm);
    document.querySelectorAll("button[data-copy]").forEach(startCopy);
    var alert = document.getElementById("form-errors");
    if (alert) alert.focus();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
