/* The call screen's stage (room.html's #call, stage.css): layout by the number of people, the
   movable self-view, the call timer, each tile's connection quality (from getStats), the
   reconnecting banner and the control bar's keyboard shortcuts. room.js owns the call and
   calls in here; nothing here talks to the server. No build step.

     var stage = RoomStage.create({stats: fn → Promise of media.stats(), now: fn → server ms})
     stage.layout()                  // after tiles come and go
     stage.startTimer(iso)           // the session's start (call.session_started_at)
     stage.setReconnecting(bool)
     stage.start() / stage.stop()    // shown / hidden (quality polling, shortcuts) */
(function () {
  "use strict";

  var QUALITY_MS = 2000;
  // Django's JavaScript catalog, or join/i18n.js's fallback when it did not load.
  var _ = window.gettext;
  var fmt = window.interpolate;

  function $(id) {
    return document.getElementById(id);
  }

  // Numbers in the page's language (<html lang>, the language its texts are in).
  var lang = document.documentElement.lang || undefined;
  var number = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
  var twoDigits = new Intl.NumberFormat(lang, { minimumIntegerDigits: 2, useGrouping: false });
  var percent = new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 });
  var list = window.Intl && Intl.ListFormat ? new Intl.ListFormat(lang, { type: "unit", style: "short" }) : null;

  // The call's length as m:ss or h:mm:ss, the digits in the page's language.
  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var sec = twoDigits.format(s % 60);
    return h ? number.format(h) + ":" + twoDigits.format(m) + ":" + sec : number.format(m) + ":" + sec;
  }

  // good / fair / poor from round-trip time, packet loss and the receiving bitrate.
  function level(q) {
    if (q.rtt == null && q.kbps == null) return "unknown";
    if (q.kbps === 0) return "lost";
    if ((q.rtt != null && q.rtt > 400) || q.loss > 0.08) return "poor";
    if ((q.rtt != null && q.rtt > 200) || q.loss > 0.02) return "fair";
    return "good";
  }

  var LEVELS = {
    good: _("Connection good"),
    fair: _("Connection fair"),
    poor: _("Connection poor"),
    lost: _("No media is arriving"),
    unknown: _("Connection unknown"),
  };

  function describe(name, q) {
    var parts = [];
    if (q.rtt != null) parts.push(fmt(_("%(ms)s ms delay"), { ms: number.format(q.rtt) }, true));
    if (q.loss != null) parts.push(fmt(_("%(lost)s lost"), { lost: percent.format(q.loss) }, true));
    if (q.kbps != null) parts.push(fmt(_("%(kbps)s kbit/s"), { kbps: number.format(q.kbps) }, true));
    return parts.length ? fmt(_("%(level)s (%(details)s)"), { level: LEVELS[name], details: list ? list.format(parts) : parts.join(", ") }, true) : LEVELS[name];
  }

  function create(options) {
    var root = $("call");
    var main = $("stage-main");
    var tiles = $("tiles");
    var self = $("self-tile");
    var timer = $("call-timer");
    var reconnecting = $("stage-reconnecting");
    var since = null;
    var ticking = null;
    var polling = null;
    var previous = {}; // peer → last sample, for rates

    /* --- layout --- */

    function layout() {
      var count = tiles.querySelectorAll(".tile-remote").length;
      tiles.setAttribute("data-count", String(count));
      root.setAttribute("data-remotes", String(count));
      keepInside();
    }

    /* --- the self-view: dragged with a pointer, kept inside the stage --- */

    var drag = null;

    function place(x, y) {
      var box = main.getBoundingClientRect();
      var w = self.offsetWidth;
      var h = self.offsetHeight;
      x = Math.min(Math.max(0, x), Math.max(0, box.width - w));
      y = Math.min(Math.max(0, y), Math.max(0, box.height - h));
      self.style.left = x + "px";
      self.style.top = y + "px";
      self.style.right = "auto";
      self.style.bottom = "auto";
    }

    function keepInside() {
      if (self.style.left) place(parseFloat(self.style.left), parseFloat(self.style.top));
    }

    self.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      var box = self.getBoundingClientRect();
      drag = { dx: event.clientX - box.left, dy: event.clientY - box.top, id: event.pointerId };
      self.setPointerCapture(event.pointerId);
      self.classList.add("is-dragging");
    });
    self.addEventListener("pointermove", function (event) {
      if (!drag || drag.id !== event.pointerId) return;
      var box = main.getBoundingClientRect();
      place(event.clientX - box.left - drag.dx, event.clientY - box.top - drag.dy);
    });
    function drop() {
      drag = null;
      self.classList.remove("is-dragging");
    }
    self.addEventListener("pointerup", drop);
    self.addEventListener("pointercancel", drop);
    window.addEventListener("resize", keepInside);

    /* --- the timer --- */

    function tick() {
      var text = duration(since ? options.now() - since : 0);
      if (timer.textContent !== text) timer.textContent = text;
    }

    function startTimer(iso) {
      var t = iso ? Date.parse(iso) : NaN;
      since = isNaN(t) ? null : t;
      tick();
    }

    /* --- connection quality, per remote tile --- */

    function sample() {
      options.stats().then(function (all) {
        Object.keys(all).forEach(function (peer) {
          var s = all[peer] || {};
          var now = {
            at: performance.now(),
            bytes: ((s.audio && s.audio.bytesReceived) || 0) + ((s.video && s.video.bytesReceived) || 0),
            received: ((s.audio && s.audio.packetsReceived) || 0) + ((s.video && s.video.packetsReceived) || 0),
            lost: ((s.audio && s.audio.packetsLost) || 0) + ((s.video && s.video.packetsLost) || 0),
          };
          var before = previous[peer];
          previous[peer] = now;
          var q = { rtt: s.rtt != null ? s.rtt * 1000 : null, loss: null, kbps: null };
          if (before && now.at > before.at) {
            var got = now.received - before.received;
            var lost = Math.max(0, now.lost - before.lost);
            q.loss = got + lost > 0 ? lost / (got + lost) : 0;
            q.kbps = ((now.bytes - before.bytes) * 8) / (now.at - before.at);
          }
          var indicator = tiles.querySelector('.tile-remote[data-session="' + peer + '"] .tile-quality');
          if (!indicator) return;
          var name = level(q);
          var text = describe(name, q);
          indicator.setAttribute("data-level", name);
          indicator.setAttribute("data-rtt", q.rtt == null ? "" : String(Math.round(q.rtt)));
          indicator.setAttribute("data-kbps", q.kbps == null ? "" : String(Math.round(q.kbps)));
          indicator.setAttribute("aria-label", text);
          indicator.title = text;
        });
      }, function () {
        /* a connection closed meanwhile */
      });
    }

    /* --- keyboard shortcuts: Ctrl (⌘) + the key of a control, Alt too where it says so --- */

    function typing(target) {
      return target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
    }

    function onKey(event) {
      if (event.key === "Escape") {
        var open = root.querySelector(".stage-panel:not([hidden]), .stage-dialog:not([hidden])");
        if (open && options.closePanels) {
          options.closePanels();
          event.preventDefault();
        }
        return;
      }
      if (!(event.ctrlKey || event.metaKey) || event.shiftKey) return;
      var buttons = root.querySelectorAll(".controls button[data-key]");
      for (var i = 0; i < buttons.length; i++) {
        var b = buttons[i];
        if (b.getAttribute("data-key") !== event.code) continue;
        if (!!b.getAttribute("data-alt") !== event.altKey) continue;
        if (typing(event.target) && !event.altKey && event.code !== "KeyD" && event.code !== "KeyE") continue;
        event.preventDefault(); // Ctrl+D would bookmark the page, Ctrl+E search
        if (!b.hidden && !b.disabled) b.click();
        return;
      }
    }

    function start() {
      document.body.classList.add("in-call");
      clearInterval(ticking);
      clearInterval(polling);
      ticking = setInterval(tick, 1000);
      polling = setInterval(sample, QUALITY_MS);
      document.addEventListener("keydown", onKey);
      layout();
    }

    function stop() {
      document.body.classList.remove("in-call");
      clearInterval(ticking);
      clearInterval(polling);
      document.removeEventListener("keydown", onKey);
      previous = {};
    }

    return {
      layout: layout,
      startTimer: startTimer,
      setReconnecting: function (on) {
        reconnecting.hidden = !on;
      },
      start: start,
      stop: stop,
    };
  }

  window.RoomStage = { create: create };
})();
