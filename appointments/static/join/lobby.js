/* The waiting room on the join page (issue 15). The server decides who waits (the join rule,
   calls.capabilities.join_state): in a live call the patient stays in the lobby until a
   clinician is in the call, gets no signaling and sends no media. This file only says so:
   - the lobby's status text ("Your clinician will be with you shortly", then "Running late —
     N min" once the clinic's minutes have passed since the start, or "knows you are here"
     when a clinician is in and admits by hand), through Django's JavaScript catalog (gettext),
     numbers and times in the page's language;
   - the clinic's lobby message, live (`lobby` messages carry `waiting_room.message`);
   - for a host in the call, an Admit button per person waiting.
   room.js calls window.RoomLobby at a few marked hooks; nothing here may throw. */
(function () {
  "use strict";

  var messageEl = document.getElementById("lobby-message");
  var admitEl = document.getElementById("lobby-admit");
  if (!messageEl || !admitEl) return;

  // Django's JavaScript catalog, or join/i18n.js's fallback when it did not load.
  var _ = window.gettext;
  var ngettext = window.ngettext;
  var fmt = window.interpolate;
  // Numbers and times in the page's language (<html lang>, the language its texts are in).
  var lang = document.documentElement.lang || undefined;
  var number = new Intl.NumberFormat(lang);

  var room = { enabled: false, auto_admit: true, running_late_after_seconds: null, message: "" };
  var inLobby = false;

  function showMessage() {
    var text = inLobby && room.message ? fmt(_("Message from the clinic: %(message)s"), { message: room.message }, true) : "";
    messageEl.hidden = !text;
    if (messageEl.textContent !== text) messageEl.textContent = text;
  }

  function minutesLate(call, now) {
    var starts = Date.parse(call && call.starts_at);
    var after = room.running_late_after_seconds;
    if (isNaN(starts) || after === null || after === undefined) return null;
    var late = now - starts;
    if (late < after * 1000) return null;
    return Math.max(1, Math.floor(late / 60000));
  }

  // The page's own time zone (the clinic's for staff, the patient's for them) and 24-hour
  // clock, like every other time on the page; not the browser's zone, nor its language.
  var configEl = document.getElementById("room-config");
  var zone = undefined;
  try {
    zone = (configEl && JSON.parse(configEl.textContent).time_zone) || undefined;
  } catch (e) {
    zone = undefined;
  }
  var clock;
  try {
    clock = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: zone });
  } catch (e) {
    clock = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }

  function waitingSince(iso) {
    var at = new Date(iso);
    if (isNaN(at.getTime())) return "";
    return " · " + fmt(_("Waiting since %(time)s"), { time: clock.format(at) }, true);
  }

  window.RoomLobby = {
    /* A `lobby` message from the call socket: this tab waits. */
    update: function (m) {
      inLobby = true;
      if (m && m.waiting_room) room = m.waiting_room;
      showMessage();
    },
    /* The lobby's status text, or null to keep room.js's own (a call still in backstage). */
    text: function (call, hostPresent, now) {
      if (!room.enabled || !call || call.backstage) return null;
      if (hostPresent) return _("Your clinician knows you are here and will let you in shortly.");
      var late = minutesLate(call, now);
      if (late !== null) {
        var text = ngettext(
          "Running late — %(minutes)s min. Your clinician will be with you as soon as possible: please keep this page open.",
          "Running late — %(minutes)s min. Your clinician will be with you as soon as possible: please keep this page open.",
          late
        );
        return fmt(text, { minutes: number.format(late) }, true);
      }
      return _("Your clinician will be with you shortly. Please keep this page open.");
    },
    /* room.js's seam (showLobby): the same as `update`. */
    show: function (m) {
      window.RoomLobby.update(m);
    },
    /* The tab left the lobby (joined, finished). */
    hide: function () {
      inLobby = false;
      showMessage();
    },
    /* A host's list of people waiting (joined / lobby_updated), with Admit when the call
       admits by hand or nobody else holds the call. `send` is room.js's socket send. */
    waiting: function (list, caps, joined, send) {
      var may = joined && (caps || []).indexOf("join-backstage") >= 0 && (list || []).length > 0;
      admitEl.hidden = !may;
      admitEl.textContent = "";
      if (!may) return;
      list.forEach(function (p) {
        var item = document.createElement("li");
        var name = document.createElement("span");
        name.textContent = ((p.user && (p.user.name || p.user.id)) || _("Someone")) + waitingSince(p.waiting_since);
        var button = document.createElement("button");
        button.type = "button";
        button.className = "btn btn-small btn-primary";
        button.textContent = _("Admit");
        button.setAttribute("aria-label", fmt(_("Admit %(name)s"), { name: (p.user && (p.user.name || p.user.id)) || _("Someone") }, true));
        button.setAttribute("data-admit", p.user_session_id);
        button.addEventListener("click", function () {
          button.disabled = true;
          send({ type: "admit", user_session_id: p.user_session_id });
        });
        item.appendChild(name);
        item.appendChild(document.createTextNode(" "));
        item.appendChild(button);
        admitEl.appendChild(item);
      });
    },
  };
})();
