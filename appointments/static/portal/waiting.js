/* The waiting room on staff pages (Today, Waiting now): a sound and a browser notification
   when someone enters the lobby of an appointment the staff member takes part in.

   portal.js keeps the queue (templates/portal/_waiting_queue.html) live from the events
   socket; this file only watches it: an item (data-waiting="<user_session_id>") that was
   not there before, marked data-mine="1", is a newcomer to announce. Notifications need the
   staff member's opt-in (the "Notify me" button, then the browser's own prompt); the sound
   plays once the page has had a click (browsers block audio before). The notification names
   no patient: only the appointment's time.

   window.__waiting.alerts (for tests and support): the announcements made, newest last. */
(function () {
  "use strict";

  var STORE_KEY = "portal.waiting.notify";
  var seen = {};
  var audio = null;
  var alerts = [];
  window.__waiting = { alerts: alerts };

  function notificationsOn() {
    try {
      return (
        "Notification" in window &&
        Notification.permission === "granted" &&
        window.localStorage.getItem(STORE_KEY) === "1"
      );
    } catch (e) {
      return false;
    }
  }

  function unlockAudio() {
    if (audio || !(window.AudioContext || window.webkitAudioContext)) return;
    try {
      audio = new (window.AudioContext || window.webkitAudioContext)();
    } catch (e) {
      audio = null;
    }
  }

  function chime() {
    if (!audio) return false;
    try {
      var now = audio.currentTime;
      [660, 880].forEach(function (hz, i) {
        var osc = audio.createOscillator();
        var gain = audio.createGain();
        osc.frequency.value = hz;
        gain.gain.setValueAtTime(0.0001, now + i * 0.18);
        gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.18 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
        osc.connect(gain).connect(audio.destination);
        osc.start(now + i * 0.18);
        osc.stop(now + i * 0.18 + 0.17);
      });
      return true;
    } catch (e) {
      return false;
    }
  }

  function announce(item) {
    var at = item.getAttribute("data-at") || "";
    var text = "Someone is waiting for your " + at + " appointment.";
    var record = {
      id: item.getAttribute("data-waiting"),
      at: Date.now(), // when the queue showed them (tests compare it with the lobby entry)
      sound: chime(),
      notification: false,
    };
    if (notificationsOn()) {
      try {
        var shown = new Notification("Patient waiting", { body: text, tag: "waiting-" + record.id });
        shown.onclick = function () {
          window.focus();
          shown.close();
        };
        record.notification = true;
      } catch (e) {
        /* some browsers allow notifications only from a service worker */
      }
    }
    alerts.push(record);
  }

  function scan(quiet) {
    document.querySelectorAll("[data-waiting]").forEach(function (item) {
      var id = item.getAttribute("data-waiting");
      if (!id || seen[id]) return;
      seen[id] = true;
      if (!quiet && item.getAttribute("data-mine") === "1") announce(item);
    });
  }

  /* The queue is replaced on every live update (portal.js): an open Message form, what was
     typed in it and its focus must survive that. Kept by the form's action URL. */
  var drafts = {}; // action → {open, text, focused}

  function draftOf(node) {
    var details = node.closest && node.closest("details.waiting-message");
    var form = details && details.querySelector("form");
    if (!form) return null;
    var key = form.getAttribute("action");
    if (!drafts[key]) drafts[key] = { open: false, text: null, focused: false };
    return { key: key, draft: drafts[key], details: details, form: form };
  }

  function remember(event) {
    if (event.type === "focusin") {
      Object.keys(drafts).forEach(function (key) {
        drafts[key].focused = false; // focus moved: only the new place keeps it
      });
    }
    var found = draftOf(event.target);
    if (!found) return;
    var input = found.form.querySelector("input[name=text]");
    found.draft.open = found.details.open;
    found.draft.text = input ? input.value : null;
    if (event.type === "focusin") found.draft.focused = event.target === input;
  }

  function restoreDrafts() {
    document.querySelectorAll("details.waiting-message").forEach(function (details) {
      var found = draftOf(details);
      if (!found || !found.draft.open || details.open) return;
      details.open = true;
      var input = found.form.querySelector("input[name=text]");
      if (!input) return;
      if (found.draft.text !== null) input.value = found.draft.text;
      if (found.draft.focused) {
        input.focus();
        input.setSelectionRange(input.value.length, input.value.length);
      }
    });
  }

  function startOptIn(button) {
    function show() {
      var possible = "Notification" in window && Notification.permission !== "denied";
      button.hidden = !possible;
      button.textContent = notificationsOn()
        ? "Notifications on"
        : "Notify me when a patient of mine is waiting";
      button.setAttribute("aria-pressed", notificationsOn() ? "true" : "false");
    }
    button.addEventListener("click", function () {
      unlockAudio();
      if (notificationsOn()) {
        try {
          window.localStorage.removeItem(STORE_KEY);
        } catch (e) {
          /* private mode: nothing stored */
        }
        show();
        return;
      }
      Promise.resolve(Notification.requestPermission())
        .then(function (permission) {
          if (permission === "granted") window.localStorage.setItem(STORE_KEY, "1");
        })
        .catch(function () {
          /* refused or unavailable: the sound still plays */
        })
        .then(show);
    });
    show();
  }

  function start() {
    if (!document.querySelector("[data-waiting-queue]")) return;
    scan(true); // whoever waits already when the page opens is not news
    document.querySelectorAll("[data-notify-optin]").forEach(startOptIn);
    document.addEventListener("click", unlockAudio, { once: true });
    ["toggle", "input", "focusin"].forEach(function (type) {
      document.addEventListener(type, remember, true);
    });
    document.addEventListener("submit", function (event) {
      var found = draftOf(event.target);
      if (found) delete drafts[found.key]; // sent: nothing to keep
    }, true);
    new MutationObserver(function () {
      restoreDrafts();
      scan(false);
    }).observe(document.body, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
