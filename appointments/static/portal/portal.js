/* Staff portal: small progressive enhancements, no build step.
   - the schedule and appointment pages update live from the events WebSocket, and poll
     every few seconds while it is closed;
   - the schedule form's patient search narrows the patient list;
   - forms with data-confirm ask first; the call id can be copied.
   Every network failure is handled quietly: nothing here may throw into the console. */
(function () {
  "use strict";

  var REFRESH_MS = 5000;

  /* The time now in the clinic's time zone (data-time-zone, the page's IANA zone) and the
     24-hour clock, like every other time on the portal; the browser's zone only if the
     page gave none or the browser does not know it. */
  function timeNow(zone) {
    var options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    if (zone) options.timeZone = zone;
    try {
      return new Date().toLocaleTimeString("en-GB", options);
    } catch (e) {
      delete options.timeZone;
      return new Date().toLocaleTimeString("en-GB", options);
    }
  }

  /* --- live updates: the events WebSocket, with polling as the fallback -------------------
     A page region opts in with data-refresh-url (what to fetch; "" = the page itself) and,
     when the server gave a token, data-ws-url + data-ws-token + data-team (all the team's
     calls) or data-cid (one call). Events only say "something changed": the region is then
     fetched again with the session, exactly as polling does. While the socket is live,
     polling slows to once a minute (a safety net for calls the staff member's calls-API
     user may not read); when it is closed, polling runs every 5 s and the socket is retried
     with backoff. A refused token (expired, revoked) stops the retries: polling carries on. */

  var LIVE_POLL_MS = 60000;
  var DEBOUNCE_MS = 100; // events of one change come together; the waiting queue must show within 1 s
  var FATAL_CLOSE = { 4002: 1, 4005: 1, 4040: 1, 4041: 1, 4042: 1, 4043: 1 };

  function focusKey(container) {
    var active = document.activeElement;
    if (!active || !container.contains(active)) return null;
    if (active.getAttribute("href")) return { attr: "href", value: active.getAttribute("href") };
    if (active.form && active.form.getAttribute("action")) {
      return { form: active.form.getAttribute("action") };
    }
    return null;
  }

  function restoreFocus(container, key) {
    if (!key) return;
    var found = key.attr
      ? container.querySelector("[href=\"" + CSS.escape(key.value) + "\"]")
      : container.querySelector("form[action=\"" + CSS.escape(key.form) + "\"] button");
    if (found) found.focus();
  }

  // Forms carry a CSRF token that is masked anew on every render: not a change.
  function sameHtml(a, b) {
    var csrf = /name="csrfmiddlewaretoken" value="[^"]*"/g;
    return a.replace(csrf, "") === b.replace(csrf, "");
  }

  function regionsOf(container) {
    var ids = (container.getAttribute("data-live-regions") || "").split(/\s+/);
    return ids.filter(function (id) { return id && document.getElementById(id); });
  }

  function startRefresh(container) {
    var url = container.getAttribute("data-refresh-url") || window.location.href;
    var wholePage = !container.getAttribute("data-refresh-url");
    var status = document.getElementById(container.getAttribute("data-refresh-status"));
    var last = container.innerHTML;
    var busy = false;
    var again = false;
    var stopped = false;
    var live = false;
    var timer = null;
    var debounce = null;

    function setStatus(text) {
      if (status) status.textContent = text;
    }

    function swap(html) {
      if (!wholePage) {
        if (html === last) return;
        var key = focusKey(container);
        container.innerHTML = html;
        last = container.innerHTML;
        enhance(container);
        restoreFocus(container, key);
        return;
      }
      var fresh = new DOMParser().parseFromString(html, "text/html");
      regionsOf(container).forEach(function (id) {
        var old = document.getElementById(id);
        var next = fresh.getElementById(id);
        if (!old || !next || sameHtml(old.outerHTML, next.outerHTML)) return;
        var key = focusKey(old);
        var copy = document.importNode(next, true);
        old.replaceWith(copy);
        enhance(copy);
        restoreFocus(copy, key);
      });
    }

    function tick() {
      if (stopped || document.hidden) return;
      if (busy) {
        again = true;
        return;
      }
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
          swap(html);
          setStatus(
            "Updated " + timeNow(container.getAttribute("data-time-zone")) + (live ? " (live)" : "")
          );
        })
        .catch(function () {
          setStatus("Could not update; retrying…");
        })
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            tick();
          }
        });
    }

    function schedule() {
      clearInterval(timer);
      timer = setInterval(tick, live ? LIVE_POLL_MS : REFRESH_MS);
    }

    function soon() {
      clearTimeout(debounce);
      debounce = setTimeout(tick, DEBOUNCE_MS);
    }

    schedule();
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) tick();
    });
    startSocket(container, {
      onLive: function (isLive) {
        if (isLive === live) return;
        live = isLive;
        schedule();
        if (live) tick(); // catch up on anything missed while the socket was down
      },
      onEvent: soon,
    });
  }

  function startSocket(container, handlers) {
    var path = container.getAttribute("data-ws-url");
    var token = container.getAttribute("data-ws-token");
    var team = container.getAttribute("data-team");
    var cid = container.getAttribute("data-cid");
    if (!path || !token || (!team && !cid) || !window.WebSocket) return;
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var url = /^wss?:/.test(path) ? path : scheme + window.location.host + path;
    var lastId = null;
    var retryMs = 1000;
    var gaveUp = false;

    function connect() {
      var socket;
      try {
        socket = new WebSocket(url);
      } catch (e) {
        return;
      }
      socket.onopen = function () {
        // The token goes in the first message, not the URL (which servers log).
        socket.send(JSON.stringify({ type: "auth", token: token }));
      };
      socket.onmessage = function (message) {
        var data;
        try {
          data = JSON.parse(message.data);
        } catch (e) {
          return;
        }
        if (data.type === "connected") {
          var sub = team ? { type: "subscribe_team", team: team } : { type: "subscribe", cid: cid };
          if (lastId !== null) sub.last_event_id = lastId;
          socket.send(JSON.stringify(sub));
        } else if (data.type === "subscribed") {
          retryMs = 1000;
          if (lastId === null) lastId = data.last_event_id;
          handlers.onLive(true);
        } else if (data.type === "event") {
          if (lastId === null || data.id > lastId) lastId = data.id;
          handlers.onEvent(data);
        } else if (data.type === "unsubscribed" || (data.type === "error" && (data.cid || data.team))) {
          gaveUp = true; // not (or no longer) allowed: polling only
          socket.close();
        }
      };
      socket.onclose = function (event) {
        handlers.onLive(false);
        if (gaveUp || FATAL_CLOSE[event.code]) return;
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      };
      socket.onerror = function () {
        /* onclose follows and retries */
      };
    }

    connect();
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

  // Behaviour for elements that live updates may replace (swapped-in HTML needs it again).
  function enhance(root) {
    root.querySelectorAll("form[data-confirm]").forEach(startConfirm);
    root.querySelectorAll("button[data-copy]").forEach(startCopy);
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
