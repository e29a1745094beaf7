/* The join page: camera and microphone check, waiting room, the call (docs/media.md).
   No build step. The call socket carries presence and signaling; media goes through the
   module RoomMedia.create(joined.media.kind) returns (mesh.js today). Nothing here may throw
   into the console: every failure becomes a message on the page.

   window.__room (for tests and support): stats() → per-peer inbound/outbound bytes,
   phase() → prejoin | connecting | lobby | joined | finished, peers(), sessionId(),
   devices() → the ids of the camera and microphone in use, sharing() → a screen is shared.

   The call screen's parts live beside this file: stage.js (layout, self-view, timer,
   connection quality, shortcuts), chat.js (the chat panel). The seam for a waiting-room
   screen: showLobby(message) when the page waits in the lobby, showStage() when it joins; a
   `window.RoomLobby` ({show(message), hide()}) loaded before this file is told both.
   Texts go through Django's JavaScript catalog (gettext). */
(function () {
  "use strict";

  var config = document.getElementById("room-config");
  if (!config) return;
  var cfg = JSON.parse(config.textContent);
  // Django's JavaScript catalog, or join/i18n.js's fallback when it did not load.
  var _ = window.gettext;
  var ngettext = window.ngettext;
  var pgettext = window.pgettext;
  // Numbers, times and lists in the page's language (<html lang>, the language its texts are in).
  var lang = document.documentElement.lang || undefined;

  var RETRY_MIN_MS = 500;
  var RETRY_MAX_MS = 5000;
  var PING_MS = 25000;
  var TICK_MS = 1000;
  var OUTBOX_MAX = 500;
  var NOTICE_MS = 8000;

  function $(id) {
    return document.getElementById(id);
  }

  var el = {
    status: $("room-status"),
    when: $("room-when"),
    waiting: $("room-waiting"),
    starts: $("room-starts"),
    prejoin: $("prejoin"),
    preview: $("preview"),
    previewOff: $("preview-off"),
    deviceMessage: $("device-message"),
    pickers: $("device-pickers"),
    camSelect: $("camera-select"),
    micSelect: $("mic-select"),
    retry: $("retry-devices"),
    join: $("join-button"),
    lobbyLeave: $("lobby-leave"),
    call: $("call"),
    banner: $("call-banner"),
    notice: $("call-notice"),
    tiles: $("tiles"),
    selfVideo: $("self-video"),
    selfOff: $("self-off"),
    selfFlags: $("self-flags"),
    mic: $("mic-toggle"),
    cam: $("cam-toggle"),
    devicesToggle: $("devices-toggle"),
    devicesPanel: $("devices-panel"),
    goLive: $("go-live"),
    leave: $("leave"),
    end: $("end-call"),
    endConfirm: $("end-confirm"),
    endYes: $("end-yes"),
    endNo: $("end-no"),
    finished: $("finished"),
    finishedTitle: $("h-finished"),
    finishedText: $("finished-text"),
    rejoin: $("rejoin"),
    share: $("share-toggle"),
    shareBanner: $("share-banner"),
    shareStop: $("share-stop"),
  };

  /* --- time: the server's clock, shown in the person's time zone ---------------------- */

  var clockOffset = 0;

  function syncClock(serverTime) {
    var t = Date.parse(serverTime);
    if (!isNaN(t)) clockOffset = t - Date.now();
  }

  function serverNow() {
    return Date.now() + clockOffset;
  }

  var timeFormat = new Intl.DateTimeFormat(lang, {
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone: cfg.time_zone,
  });

  var number = new Intl.NumberFormat(lang);

  function clockTime(iso) {
    return iso ? timeFormat.format(new Date(iso)) : "";
  }

  syncClock(cfg.server_time);

  /* --- the call screen's parts (stage.js, chat.js) ------------------------------------ */

  var stage = window.RoomStage.create({
    stats: function () {
      return media ? media.stats() : Promise.resolve({});
    },
    now: serverNow,
    closePanels: closePanels,
  });

  var chat = window.RoomChat.create({
    timeFormat: timeFormat,
    send: function (text) {
      if (phase !== "joined" || reconnecting) {
        notice(_("The message was not sent: the connection is not back yet."));
        return false;
      }
      return send({ type: "chat", text: text });
    },
    onOpen: function () {
      closePanels();
    },
    onNew: function (who) {
      notice(interpolate(_("New message from %(name)s."), { name: who }, true));
    },
  });

  function interpolate(text, args) {
    return window.interpolate(text, args, true);
  }

  // The panels over the stage (devices, chat, the end dialog): one at a time.
  function closePanels() {
    el.devicesPanel.hidden = true;
    el.devicesToggle.setAttribute("aria-expanded", "false");
    el.endConfirm.hidden = true;
    chat.close();
  }

  /* --- state -------------------------------------------------------------------------- */

  var phase = "prejoin"; // connecting | lobby | joined | finished
  var state = cfg.state; // too_early | lobby | backstage | live (from the page)
  var call = { starts_at: cfg.starts_at, backstage: state !== "live" };
  var hostPresent = false;
  var caps = [];
  var people = {}; // user_session_id → {name, audio, video}
  var waiting = [];
  var reconnecting = false;
  var devicesChecked = false;

  function setStatus(text) {
    if (el.status.textContent !== text) el.status.textContent = text;
  }

  function joinLabel() {
    if (state === "backstage" || (state === "too_early" && cfg.then === "backstage")) {
      return _("Enter backstage");
    }
    return state === "live" ? _("Join the call") : _("Enter the waiting room");
  }

  function isOpen() {
    return state !== "too_early" || (cfg.opens_at && serverNow() >= Date.parse(cfg.opens_at));
  }

  function lobbyText() {
    // [waiting room hook] lobby.js words a live call's waiting room (null: not one).
    var room = window.RoomLobby && window.RoomLobby.text(call, hostPresent, serverNow());
    if (room) return room;
    var late = call.backstage && call.starts_at && serverNow() > Date.parse(call.starts_at);
    if (hostPresent) {
      return _("The clinician is getting ready. You will be let in automatically: keep this page open.");
    }
    if (late) {
      return _(
        "The clinician is running late. Please stay on this page: you will be let in as soon as the call starts."
      );
    }
    var starts =
      cfg.role === "patient"
        ? _(
            "You are in the waiting room. Your appointment starts at %(time)s: you will be let in automatically when the clinician starts the call."
          )
        : _(
            "You are in the waiting room. The appointment starts at %(time)s: you will be let in automatically when the clinician starts the call."
          );
    return interpolate(starts, { time: clockTime(call.starts_at) });
  }

  function render() {
    if (phase === "prejoin") {
      el.join.textContent = joinLabel();
      var open = isOpen();
      el.join.disabled = !open || !devicesChecked || !cfg.token;
      if (!open) {
        setStatus(
          interpolate(
            cfg.then === "backstage"
              ? _("You can enter backstage from %(time)s. Keep this page open: the button below works from then.")
              : _("The waiting room opens at %(time)s. Keep this page open: the button below works from then."),
            { time: clockTime(cfg.opens_at) }
          )
        );
      } else if (devicesChecked) {
        setStatus(
          interpolate(_("Check your camera and microphone below, then select “%(button)s”."), { button: joinLabel() })
        );
      }
    } else if (phase === "connecting") {
      setStatus(reconnecting ? _("The connection was lost. Reconnecting…") : _("Connecting…"));
    } else if (phase === "lobby") {
      setStatus(reconnecting ? _("The connection was lost. Reconnecting…") : lobbyText());
    } else if (phase === "joined") {
      if (reconnecting) {
        setStatus(_("The connection was lost. Reconnecting…"));
      } else if (call.backstage) {
        setStatus(_("You are backstage: the patient cannot see or hear you until the call goes live."));
      } else {
        setStatus(_("You are in the call."));
      }
      stage.setReconnecting(reconnecting);
      var banner = call.backstage ? _("Backstage") : _("Live");
      if (el.banner.textContent !== banner) el.banner.textContent = banner;
      el.banner.className = "call-banner " + (call.backstage ? "is-backstage" : "is-live");
      el.goLive.hidden = !(call.backstage && caps.indexOf("update-call") >= 0);
      el.end.hidden = caps.indexOf("end-call") < 0;
      el.share.hidden = !canShare();
    }
    renderWaiting();
  }

  var listFormat = window.Intl && Intl.ListFormat ? new Intl.ListFormat(lang, { type: "conjunction" }) : null;

  function names(list) {
    if (listFormat) return listFormat.format(list);
    return list.join(", ");
  }

  function renderWaiting() {
    if (!el.waiting) return;
    var who = waiting.map(function (p) {
      return (p.user && p.user.name) || _("Someone");
    });
    var show = phase === "joined" && who.length > 0;
    // [waiting room hook] Admit buttons for hosts (lobby.js).
    if (window.RoomLobby) window.RoomLobby.waiting(waiting, caps, phase === "joined", send);
    el.waiting.hidden = !show;
    var text = show
      ? interpolate(
          ngettext("%(names)s is waiting in the lobby.", "%(names)s are waiting in the lobby.", who.length),
          { names: names(who) }
        )
      : "";
    if (el.waiting.textContent !== text) el.waiting.textContent = text;
  }

  function setCall(summary) {
    if (!summary) return;
    call = summary;
    stage.startTimer(summary.session_started_at);
    if (summary.server_time) syncClock(summary.server_time);
    if (summary.starts_at && el.starts) {
      el.starts.textContent = clockTime(summary.starts_at);
      el.starts.setAttribute("datetime", summary.starts_at);
    }
  }

  /* --- camera and microphone ---------------------------------------------------------- */

  var local = new MediaStream();
  var media = null; // the media module (mesh) once joined
  var micMuted = false;
  var wantCamera = !cfg.audio_only;
  var hasMediaDevices = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

  var PROBLEMS = {
    denied: _(
      "Your browser is not allowing this page to use your camera and microphone. To allow them, select the camera icon or the padlock next to the web address, choose Allow, then select “Try again”. You can also join without them: you will see and hear the others, but they will not see or hear you."
    ),
    missing: _(
      "No camera or microphone was found. Connect one and select “Try again”, or join without them: you will see and hear the others, but they will not see or hear you."
    ),
    "missing-camera": _("No camera was found: you will join with sound only."),
    "missing-mic": _("No microphone was found: the others will see you but not hear you."),
    busy: _("Your camera or microphone is being used by another application. Close it, then select “Try again”."),
    unsupported: _(
      "This browser cannot use a camera or microphone on this page. You can still join to see and hear the others."
    ),
  };

  function showProblem(kind) {
    if (!kind) {
      el.deviceMessage.hidden = true;
      el.deviceMessage.textContent = "";
      el.deviceMessage.removeAttribute("data-problem");
      el.retry.hidden = true;
      return;
    }
    el.deviceMessage.textContent = PROBLEMS[kind];
    el.deviceMessage.setAttribute("data-problem", kind);
    el.deviceMessage.hidden = false;
    el.retry.hidden = kind === "missing-camera" && cfg.audio_only;
  }

  function problemOf(error) {
    var name = error && error.name;
    if (name === "NotAllowedError" || name === "SecurityError") return "denied";
    if (name === "NotFoundError" || name === "OverconstrainedError") return "missing";
    if (name === "NotReadableError" || name === "AbortError") return "busy";
    return "missing";
  }

  function constraint(kind) {
    var select = kind === "audio" ? el.micSelect : el.camSelect;
    return select.value ? { deviceId: { exact: select.value } } : true;
  }

  function capture(kinds) {
    var wanted = {
      audio: kinds.indexOf("audio") >= 0 ? constraint("audio") : false,
      video: kinds.indexOf("video") >= 0 ? constraint("video") : false,
    };
    return navigator.mediaDevices.getUserMedia(wanted).then(
      function (stream) {
        return { stream: stream, error: null };
      },
      function (error) {
        return { stream: null, error: error };
      }
    );
  }

  function tracksOf(kind, stream) {
    return kind === "audio" ? stream.getAudioTracks() : stream.getVideoTracks();
  }

  // Put `track` (or nothing) in place of the local track of its kind, everywhere.
  function useLocal(kind, track) {
    tracksOf(kind, local).forEach(function (old) {
      if (old !== track) {
        old.stop();
        local.removeTrack(old);
      }
    });
    if (track) {
      if (kind === "audio") track.enabled = !micMuted;
      if (tracksOf(kind, local).indexOf(track) < 0) local.addTrack(track);
    }
    if (media) media.replaceTrack(kind, kind === "video" && screenTrack ? screenTrack : track);
    showSelf();
    sendMediaState();
  }

  function showSelf() {
    var video = local.getVideoTracks();
    var view = video.length ? new MediaStream(video) : null;
    [el.preview, el.selfVideo].forEach(function (v) {
      v.srcObject = view;
    });
    var offText = cfg.audio_only ? _("Audio only") : wantCamera ? _("No camera") : _("Camera off");
    el.previewOff.textContent = offText;
    el.selfOff.textContent = offText;
    el.previewOff.hidden = !!view;
    el.selfOff.hidden = !!view;
    el.selfFlags.textContent = micMuted || !local.getAudioTracks().length ? _("Muted") : "";
  }

  async function checkDevices() {
    showProblem(null);
    if (!hasMediaDevices) {
      showProblem("unsupported");
      return finishCheck();
    }
    var kinds = wantCamera ? ["audio", "video"] : ["audio"];
    var got = await capture(kinds);
    var problem = null;
    if (!got.stream && got.error && got.error.name === "OverconstrainedError") {
      // A chosen device is gone: let the browser pick.
      el.micSelect.value = "";
      el.camSelect.value = "";
      got = await capture(kinds);
    }
    if (got.stream) {
      kinds.forEach(function (kind) {
        useLocal(kind, tracksOf(kind, got.stream)[0] || null);
      });
    } else if (problemOf(got.error) === "missing" && kinds.length > 1) {
      // One of them may be there: try each alone.
      var audio = await capture(["audio"]);
      var video = await capture(["video"]);
      useLocal("audio", audio.stream ? audio.stream.getAudioTracks()[0] : null);
      useLocal("video", video.stream ? video.stream.getVideoTracks()[0] : null);
      if (audio.stream && !video.stream) problem = "missing-camera";
      else if (video.stream && !audio.stream) problem = "missing-mic";
      else if (!audio.stream && !video.stream) problem = problemOf(audio.error);
    } else {
      problem = problemOf(got.error);
    }
    if (problem) showProblem(problem);
    return finishCheck();
  }

  async function finishCheck() {
    await listDevices();
    devicesChecked = true;
    showSelf();
    render();
  }

  function fillSelect(select, devices, current, noneText) {
    select.textContent = "";
    devices.forEach(function (device, i) {
      var option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent =
        device.label ||
        interpolate(select === el.camSelect ? _("Camera %(n)s") : _("Microphone %(n)s"), { n: number.format(i + 1) });
      select.appendChild(option);
    });
    if (!devices.length) {
      var none = document.createElement("option");
      none.value = "";
      none.textContent = noneText;
      select.appendChild(none);
    }
    if (current) select.value = current;
    select.disabled = !devices.length;
  }

  function currentDevice(kind) {
    var track = tracksOf(kind, local)[0];
    var settings = track && track.getSettings ? track.getSettings() : {};
    return settings.deviceId || "";
  }

  async function listDevices() {
    if (!hasMediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    var all = [];
    try {
      all = await navigator.mediaDevices.enumerateDevices();
    } catch (e) {
      all = [];
    }
    // Without permission, browsers list devices without ids: nothing to choose from.
    var usable = function (kind) {
      return all.filter(function (d) {
        return d.kind === kind && d.deviceId;
      });
    };
    fillSelect(el.camSelect, usable("videoinput"), currentDevice("video"), _("No camera available"));
    fillSelect(el.micSelect, usable("audioinput"), currentDevice("audio"), _("No microphone available"));
    el.camSelect.closest(".field").hidden = cfg.audio_only;
  }

  async function switchDevice(kind) {
    if (kind === "video" && !wantCamera) return; // used when the camera is switched on
    var got = await capture([kind]);
    if (got.stream) {
      showProblem(null);
      useLocal(kind, tracksOf(kind, got.stream)[0] || null);
    } else {
      showProblem(problemOf(got.error));
    }
  }

  el.camSelect.addEventListener("change", function () {
    switchDevice("video");
  });
  el.micSelect.addEventListener("change", function () {
    switchDevice("audio");
  });
  el.retry.addEventListener("click", function () {
    devicesChecked = false;
    render();
    checkDevices();
  });
  if (hasMediaDevices && "ondevicechange" in navigator.mediaDevices) {
    navigator.mediaDevices.addEventListener("devicechange", function () {
      listDevices();
    });
  }

  // A control's visible label (its accessible name) and its on / off look.
  function setControl(button, label, off) {
    button.querySelector(".ctl-label").textContent = label;
    button.classList.toggle("is-off", !!off);
  }

  // The controls whose label says their state, from that state (in the page's language).
  function renderControls() {
    setControl(el.mic, micMuted ? _("Unmute") : _("Mute"), micMuted);
    setControl(el.cam, wantCamera ? pgettext("call control", "Camera off") : pgettext("call control", "Camera on"), !wantCamera);
    renderShare();
  }

  function setMicMuted(muted) {
    micMuted = muted;
    local.getAudioTracks().forEach(function (t) {
      t.enabled = !micMuted;
    });
    setControl(el.mic, micMuted ? _("Unmute") : _("Mute"), micMuted);
    showSelf();
    sendMediaState();
  }

  function setCamera(on) {
    wantCamera = on;
    setControl(el.cam, wantCamera ? pgettext("call control", "Camera off") : pgettext("call control", "Camera on"), !wantCamera);
    if (wantCamera) switchDevice("video");
    else useLocal("video", null); // stops the camera (its light goes off)
  }

  /* --- screen share: the shared screen takes the camera's place on every connection
     (replaceTrack, no renegotiation); stopping puts the camera back. Only with the
     `screenshare` capability (the server checks it again on `media_state`). --- */

  var screenTrack = null;

  function canShare() {
    return (
      caps.indexOf("screenshare") >= 0 &&
      !cfg.audio_only &&
      !!(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia)
    );
  }

  function startShare() {
    if (screenTrack || !canShare()) return;
    navigator.mediaDevices.getDisplayMedia({ video: true, audio: false }).then(
      function (stream) {
        var track = stream.getVideoTracks()[0];
        if (!track || phase !== "joined") {
          stream.getTracks().forEach(function (t) {
            t.stop();
          });
          return;
        }
        screenTrack = track;
        track.addEventListener("ended", stopShare); // the browser's own "Stop sharing"
        if (media) media.replaceTrack("video", track);
        renderShare();
        sendMediaState();
      },
      function (error) {
        // Cancelled in the browser's picker: nothing to say.
        if (!error || error.name !== "NotAllowedError") notice(_("Your screen could not be shared."));
      }
    );
  }

  function stopShare() {
    if (!screenTrack) return;
    var track = screenTrack;
    screenTrack = null;
    track.stop();
    if (media) media.replaceTrack("video", tracksOf("video", local)[0] || null);
    renderShare();
    sendMediaState();
  }

  function renderShare() {
    var on = !!screenTrack;
    setControl(el.share, on ? _("Stop sharing") : _("Share screen"), false);
    el.share.classList.toggle("is-active", on);
    el.shareBanner.hidden = !on;
  }

  el.share.addEventListener("click", function () {
    if (screenTrack) stopShare();
    else startShare();
  });
  el.shareStop.addEventListener("click", stopShare);

  el.mic.addEventListener("click", function () {
    setMicMuted(!micMuted);
  });

  el.cam.addEventListener("click", function () {
    setCamera(!wantCamera);
  });
  if (cfg.audio_only) el.cam.hidden = true;

  /* What the call lets this person send (UpdateUserPermissions can take it away and give it
     back): without send-audio the microphone is muted and its button disabled; the same for
     the camera without send-video. Regained, the buttons work again (nothing turns on alone). */
  var titles = { mic: el.mic.title, cam: el.cam.title };

  function applyPermissions() {
    var mayAudio = caps.indexOf("send-audio") >= 0;
    var mayVideo = caps.indexOf("send-video") >= 0;
    if (!mayAudio && !micMuted) setMicMuted(true);
    if (!mayVideo && wantCamera && !cfg.audio_only) setCamera(false);
    el.mic.disabled = !mayAudio;
    el.cam.disabled = !mayVideo;
    el.mic.title = mayAudio ? titles.mic : _("The clinic has turned off your microphone in this call");
    el.cam.title = mayVideo ? titles.cam : _("The clinic has turned off your camera in this call");
  }

  el.devicesToggle.addEventListener("click", function () {
    var open = el.devicesPanel.hidden;
    if (open) closePanels();
    if (open && el.pickers.parentNode !== el.devicesPanel) el.devicesPanel.appendChild(el.pickers);
    el.devicesPanel.hidden = !open;
    el.devicesToggle.setAttribute("aria-expanded", String(open));
    if (open) el.micSelect.focus();
  });

  /* --- the call socket ---------------------------------------------------------------- */

  var ws = null;
  var sessionId = null;
  var retryMs = RETRY_MIN_MS;
  var lastError = null;
  var outbox = [];
  var pingTimer = null;

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + cfg.ws_path;
  }

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function sendSignal(to, data) {
    var message = { type: "signal", to: to, data: data };
    if (phase === "joined" && !reconnecting && send(message)) return;
    if (outbox.length < OUTBOX_MAX) outbox.push(message); // sent after the next `joined`
  }

  function sendMediaState() {
    if (phase !== "joined") return;
    send({
      type: "media_state",
      audio: !micMuted && local.getAudioTracks().length > 0,
      video: local.getVideoTracks().length > 0,
      screen: !!screenTrack,
    });
  }

  function connect() {
    var socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (e) {
      closed(socket, 1006);
      return;
    }
    ws = socket;
    socket.onopen = function () {
      var join = {
        type: "join",
        token: cfg.token,
        call_cid: cfg.call_cid,
        audio: !micMuted && local.getAudioTracks().length > 0,
        video: local.getVideoTracks().length > 0,
      };
      if (sessionId) join.user_session_id = sessionId;
      socket.send(JSON.stringify(join));
      clearInterval(pingTimer);
      pingTimer = setInterval(function () {
        send({ type: "ping" });
      }, PING_MS);
    };
    socket.onmessage = function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (ws === socket) handle(message);
    };
    socket.onclose = function (event) {
      closed(socket, event.code);
    };
    socket.onerror = function () {
      /* onclose follows */
    };
  }

  var ENDED = _("The call has ended");

  var FATAL = {
    5: [_("You cannot join this call"), _("You are not allowed to join it. Contact the clinic.")],
    16: [_("This call does not exist"), _("Contact the clinic.")],
    17: [_("You cannot join right now"), ""],
    40: [_("This page has expired"), _("Reload the page to join again.")],
    43: [_("This page is not valid any more"), _("Reload the page to join again.")],
  };

  function closed(socket, code) {
    if (socket && ws !== socket) return;
    ws = null;
    if (phase === "finished" || phase === "prejoin") return;
    if (code >= 4000 && code < 5000) {
      var error = FATAL[code - 4000] || [_("You cannot join right now"), ""];
      var text = (lastError && lastError.message) || error[1];
      if (/ended/i.test(text)) {
        finish(ENDED, _("It cannot be joined again."), false);
      } else if (/another tab/i.test(text)) {
        // The same person opened the call elsewhere, which took over (the server decides).
        finish(
          _("This call is open in another tab"),
          _("You are in the call in your other tab or device. To use this one instead, select “Use here”."),
          true,
          _("Use here")
        );
      } else if (/removed/i.test(text)) {
        // Kicked (may join again) or blocked ("cannot join it again"): never rejoin on our own.
        var blocked = /cannot/i.test(text);
        finishUnlessLinkReplaced(
          _("You were removed from the call"),
          blocked
            ? _("You cannot join it again. Contact the clinic if you think this is a mistake.")
            : _("You can join again if the clinic asks you to."),
          !blocked
        );
      } else {
        finishUnlessLinkReplaced(error[0], sentence(text) || error[1], true);
      }
      return;
    }
    reconnecting = true;
    render();
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }

  function sentence(text) {
    if (!text) return "";
    var s = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(s) ? s : s + ".";
  }

  function personName(p) {
    return (p && p.user && (p.user.name || p.user.id)) || _("Someone");
  }

  function know(p) {
    var known = people[p.user_session_id] || {};
    people[p.user_session_id] = {
      name: personName(p),
      audio: p.audio !== false,
      video: p.video !== false,
      tile: known.tile || null,
    };
    tileFor(p.user_session_id);
  }

  function handle(m) {
    if (m.type === "lobby") {
      reconnecting = false;
      retryMs = RETRY_MIN_MS;
      if (phase === "joined") backToLobby(); // the call went back to backstage
      phase = "lobby";
      hostPresent = !!m.host_present;
      setCall(m.call);
      showLobby(m); // [waiting room hook] RoomLobby.show(m) in showLobby
    } else if (m.type === "joined") {
      onJoined(m);
    } else if (m.type === "participant_joined") {
      know(m.participant);
      // Let in from the lobby: no longer waiting (no lobby_updated says so).
      waiting = waiting.filter(function (w) {
        return w.user_session_id !== m.participant.user_session_id;
      });
      renderWaiting();
      notice(interpolate(_("%(name)s joined."), { name: personName(m.participant) }));
    } else if (m.type === "participant_left") {
      var who = people[m.user_session_id];
      dropPeer(m.user_session_id);
      if (who) notice(interpolate(_("%(name)s left the call."), { name: who.name }));
    } else if (m.type === "participant_updated") {
      var p = people[m.user_session_id];
      if (p) {
        p.audio = !!m.audio;
        p.video = !!m.video;
        p.screen = !!m.screen;
        tileFor(m.user_session_id);
      }
    } else if (m.type === "chat") {
      if (m.message) chat.add(m.message);
    } else if (m.type === "muted") {
      var what = [];
      if (m.audio && !micMuted) {
        setMicMuted(true);
        what.push("microphone");
      }
      if (m.video && wantCamera && !cfg.audio_only) {
        setCamera(false);
        what.push("camera");
      }
      if (what.length === 2) {
        notice(_("Your microphone and camera were turned off by the host. You can turn them on again."));
      } else if (what[0] === "microphone") {
        notice(_("Your microphone was turned off by the host. You can turn it on again."));
      } else if (what[0] === "camera") {
        notice(_("Your camera was turned off by the host. You can turn it on again."));
      }
    } else if (m.type === "permissions") {
      caps = m.own_capabilities || [];
      applyPermissions();
      Object.keys(people).forEach(tileFor);
      render();
    } else if (m.type === "lobby_updated") {
      waiting = m.waiting || [];
      renderWaiting();
    } else if (m.type === "signal") {
      if (media && m.from) media.onSignal(m.from, m.data);
    } else if (m.type === "call_updated") {
      setCall(m.call);
      el.goLive.disabled = false;
      render();
    } else if (m.type === "call_ended") {
      finish(
        ENDED,
        cfg.role !== "staff" ? _("Thank you. You can close this page.") : _("You can go back to the appointment."),
        false
      );
    } else if (m.type === "left") {
      finish(
        phase === "lobby" ? _("You left the waiting room") : _("You left the call"),
        _("You can join again while the appointment is on."),
        true
      );
    } else if (m.type === "timer_warning") {
      var minutes = Math.max(1, Math.round((m.remaining_seconds || 0) / 60));
      var about = ngettext("in about %(n)s minute", "in about %(n)s minutes", minutes);
      notice(
        interpolate(_("The call ends automatically at %(time)s (%(about)s)."), {
          time: clockTime(m.timer_ends_at),
          about: interpolate(about, { n: number.format(minutes) }),
        })
      );
    } else if (m.type === "error") {
      lastError = m;
      el.goLive.disabled = false;
      // Code 4 (bad input) is a stale signal to someone who just left: nothing to tell.
      if ((phase === "joined" || phase === "lobby") && m.code !== 4) {
        notice(sentence(m.message || _("Something went wrong.")));
      }
    }
  }

  function backToLobby() {
    stopShare();
    stage.stop();
    closePanels();
    if (media) media.close();
    media = null;
    sessionId = null; // the server gives a new one when the call goes live again
    outbox = [];
    Object.keys(people).forEach(dropTile);
    waiting = [];
    el.call.hidden = true;
    el.prejoin.hidden = false;
    var join = el.prejoin.querySelector(".room-join");
    join.parentNode.insertBefore(el.pickers, join);
    el.devicesPanel.hidden = true;
    el.devicesToggle.setAttribute("aria-expanded", "false");
    el.endConfirm.hidden = true;
    showSelf();
    notice("");
    el.status.focus();
  }

  // The seam for the waiting room's screen: `message` is the server's `lobby` message.
  function showLobby(message) {
    el.join.hidden = true;
    el.lobbyLeave.hidden = false;
    if (window.RoomLobby) window.RoomLobby.show(message);
    render();
  }

  function onJoined(m) {
    if (window.RoomLobby) window.RoomLobby.hide(); // [waiting room hook]
    reconnecting = false;
    retryMs = RETRY_MIN_MS;
    var resumed = !!media && sessionId === m.user_session_id;
    sessionId = m.user_session_id;
    caps = m.own_capabilities || [];
    applyPermissions();
    setCall(m.call);
    if (!resumed) {
      if (media) {
        media.close();
        Object.keys(people).forEach(dropTile);
      }
      media = window.RoomMedia && window.RoomMedia.create(m.media && m.media.kind);
      if (!media) {
        finish(_("This call cannot be joined from this page"), _("Its media server is not supported here."), true);
        return;
      }
      media.on("stream", attachStream);
      media.start(m.media, sendSignal, local, sessionId);
    }
    var listed = {};
    (m.participants || []).forEach(function (p) {
      listed[p.user_session_id] = true;
      var known = !!people[p.user_session_id];
      know(p);
      // The newcomer offers. People let in together (at go-live) list each other: the later
      // (joined_at, then user_session_id) of the two offers, so exactly one side does. After
      // a blip, anyone new is offered to (their offer may have been lost meanwhile).
      if (newer(m.participant, p) || (resumed && !known)) {
        media.addPeer(p.user_session_id, { initiator: true });
      }
    });
    Object.keys(people).forEach(function (id) {
      if (!listed[id]) dropPeer(id);
    });
    waiting = m.waiting || [];
    adoptMediaState(m.participant);
    chat.load(m.chat, m.participant && m.participant.user ? m.participant.user.id : null);
    var entering = phase !== "joined";
    phase = "joined";
    if (entering) showStage();
    render();
    sendMediaState();
    var queued = outbox;
    outbox = [];
    queued.forEach(function (message) {
      send(message);
    });
  }

  // What the server recorded for this person wins over this tab's defaults (a reload keeps
  // the microphone muted and the camera off).
  function adoptMediaState(me) {
    if (!me) return;
    if (local.getAudioTracks().length && micMuted !== !me.audio) setMicMuted(!me.audio);
    var cameraOn = wantCamera && !cfg.audio_only;
    if (!cfg.audio_only && caps.indexOf("send-video") >= 0 && cameraOn !== !!me.video) setCamera(!!me.video);
  }

  function newer(a, b) {
    var at = Date.parse(a && a.joined_at) || 0;
    var bt = Date.parse(b && b.joined_at) || 0;
    if (at !== bt) return at > bt;
    return a.user_session_id > b.user_session_id;
  }

  // The call screen takes over the page (the seam's other side: the lobby screen hides).
  function showStage() {
    if (window.RoomLobby) window.RoomLobby.hide();
    el.prejoin.hidden = true;
    el.call.hidden = false;
    if (el.pickers.parentNode !== el.devicesPanel) el.devicesPanel.appendChild(el.pickers);
    renderControls();
    showSelf();
    stage.start();
    el.banner.focus();
  }

  /* --- tiles -------------------------------------------------------------------------- */

  function tileFor(id) {
    var p = people[id];
    if (!p) return null;
    if (!p.tile) {
      var figure = document.createElement("figure");
      figure.className = "tile tile-remote";
      figure.setAttribute("data-session", id);
      var video = document.createElement("video");
      video.autoplay = true;
      video.playsInline = true;
      var off = document.createElement("p");
      off.className = "tile-off";
      var caption = document.createElement("figcaption");
      var name = document.createElement("span");
      name.className = "tile-name";
      var flags = document.createElement("span");
      flags.className = "tile-flags";
      caption.appendChild(name);
      caption.appendChild(document.createTextNode(" "));
      caption.appendChild(flags);
      // Host controls: what the call lets this user do to the others (the server decides).
      var actions = document.createElement("div");
      actions.className = "tile-actions";
      var mute = document.createElement("button");
      mute.type = "button";
      mute.className = "tile-mute";
      mute.textContent = _("Mute");
      mute.addEventListener("click", function () {
        send({ type: "mute", user_session_id: id });
      });
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "tile-remove";
      remove.textContent = _("Remove");
      remove.addEventListener("click", function () {
        var who = people[id] ? people[id].name : _("this person");
        if (window.confirm(interpolate(_("Remove %(name)s from the call? They can join again."), { name: who }))) {
          send({ type: "remove", user_session_id: id });
        }
      });
      actions.appendChild(mute);
      actions.appendChild(remove);
      // The connection's quality (stage.js fills it from getStats).
      var quality = document.createElement("span");
      quality.className = "tile-quality";
      quality.setAttribute("role", "img");
      quality.setAttribute("data-level", "unknown");
      quality.setAttribute("aria-label", _("Connection unknown"));
      for (var bar = 0; bar < 3; bar++) quality.appendChild(document.createElement("i"));
      figure.appendChild(video);
      figure.appendChild(off);
      figure.appendChild(quality);
      figure.appendChild(caption);
      figure.appendChild(actions);
      el.tiles.appendChild(figure);
      p.tile = figure;
    }
    var tile = p.tile;
    tile.querySelector("video").setAttribute("aria-label", interpolate(_("Video of %(name)s"), { name: p.name }));
    tile.querySelector(".tile-flags").textContent = p.audio ? "" : _("Muted");
    tile.setAttribute("data-muted", p.audio ? "0" : "1");
    tile.setAttribute("data-screen", p.screen ? "1" : "0");
    tile.querySelector(".tile-name").textContent = p.screen
      ? interpolate(_("%(name)s (screen)"), { name: p.name })
      : p.name;
    var muteButton = tile.querySelector(".tile-mute");
    muteButton.setAttribute("aria-label", interpolate(_("Mute %(name)s"), { name: p.name }));
    muteButton.hidden = !p.audio || caps.indexOf("mute-users") < 0;
    var removeButton = tile.querySelector(".tile-remove");
    removeButton.setAttribute("aria-label", interpolate(_("Remove %(name)s from the call"), { name: p.name }));
    removeButton.hidden = caps.indexOf("kick-user") < 0;
    var off = tile.querySelector(".tile-off");
    off.textContent = p.video ? _("Connecting…") : _("Camera off");
    off.hidden = p.video && !!tile.getAttribute("data-streaming");
    stage.layout();
    return tile;
  }

  function attachStream(id, stream) {
    // Media may come before the news of who it is (signals are direct, events are relayed).
    if (!people[id]) people[id] = { name: _("Someone joining…"), audio: true, video: true, tile: null };
    var tile = tileFor(id);
    if (!tile) return;
    var video = tile.querySelector("video");
    if (video.srcObject !== stream) video.srcObject = stream;
    tile.setAttribute("data-streaming", "1");
    tileFor(id);
    var playing = video.play();
    if (playing && playing.catch) {
      playing.catch(function () {
        notice(_("Select the video to hear the others (your browser blocked autoplay)."));
        video.controls = true;
      });
    }
  }

  function dropTile(id) {
    var p = people[id];
    if (p && p.tile) p.tile.remove();
    delete people[id];
    stage.layout();
  }

  function dropPeer(id) {
    if (media) media.removePeer(id);
    dropTile(id);
  }

  // A passing notice on the stage (aria-live): it goes after NOTICE_MS.
  var noticeTimer = null;

  function notice(text) {
    el.notice.textContent = text;
    clearTimeout(noticeTimer);
    if (text) {
      noticeTimer = setTimeout(function () {
        el.notice.textContent = "";
      }, NOTICE_MS);
    }
  }

  /* --- joining, leaving, ending ------------------------------------------------------- */

  el.join.addEventListener("click", function () {
    if (!isOpen() || !cfg.token) return;
    el.join.disabled = true;
    phase = "connecting";
    render();
    connect();
  });

  function leave() {
    if (!send({ type: "leave" })) {
      finish(_("You left the call"), "", true);
    }
  }

  el.lobbyLeave.addEventListener("click", leave);
  el.leave.addEventListener("click", leave);

  el.goLive.addEventListener("click", function () {
    el.goLive.disabled = true;
    send({ type: "go_live" });
  });

  el.end.addEventListener("click", function () {
    el.endConfirm.hidden = false;
    el.endNo.focus();
  });
  el.endNo.addEventListener("click", function () {
    el.endConfirm.hidden = true;
    el.end.focus();
  });
  el.endYes.addEventListener("click", function () {
    el.endConfirm.hidden = true;
    send({ type: "end_call" });
  });

  el.rejoin.addEventListener("click", function () {
    window.location.reload();
  });

  /* --- end states (issue 15 item 4, branch staffpages) ---------------------------------
     A removal or a refused token may mean the clinic replaced this link: then "Join again"
     (a reload) cannot work. Before offering it, the page asks whether its own URL still
     opens; if not, it says once that the link no longer works and what to do instead.
     `ending` keeps the second close of the same event (the kick, then the token re-check)
     from replacing the first one's screen. Staff pages are not links: no check. */
  var ending = false;

  function finishUnlessLinkReplaced(title, text, canRejoin) {
    if (ending || phase === "finished") return;
    if (!canRejoin || cfg.role === "staff" || !window.fetch) {
      finish(title, text, canRejoin);
      return;
    }
    ending = true;
    // The join views answer this header with {"link": "ok" | "refused"} (200 either way).
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Link-Check": "1" } })
      .then(function (response) {
        return response.ok ? response.json() : {};
      })
      .then(
        function (answer) {
          return answer && answer.link === "refused";
        },
        function () {
          return false; // offline: keep the usual next step
        }
      )
      .then(function (refused) {
        ending = false;
        if (refused && cfg.role === "patient") {
          finish(
            _("This link no longer works"),
            _("The clinic has sent a new link for this appointment. Open the newest link they sent you, or contact the clinic."),
            false
          );
        } else if (refused) {
          // A guest the clinic took off the appointment: their link is gone for good.
          finish(title, _("Contact the clinic if you think this is a mistake."), false);
        } else {
          finish(title, text, canRejoin);
        }
      });
  }

  function finish(title, text, canRejoin, rejoinLabel) {
    if (phase === "finished") return;
    phase = "finished";
    ending = false;
    if (window.RoomLobby) window.RoomLobby.hide(); // [waiting room hook]
    clearInterval(pingTimer);
    stopShare();
    stage.stop();
    closePanels();
    if (media) media.close();
    local.getTracks().forEach(function (t) {
      t.stop();
    });
    if (ws) {
      var socket = ws;
      ws = null;
      try {
        socket.close(1000);
      } catch (e) {
        /* already closed */
      }
    }
    el.prejoin.hidden = true;
    el.call.hidden = true;
    el.waiting.hidden = true;
    el.finishedTitle.textContent = title;
    el.finishedText.textContent = text;
    el.finishedText.hidden = !text;
    el.rejoin.hidden = !canRejoin;
    el.rejoin.textContent = rejoinLabel || _("Join again");
    el.finished.hidden = false;
    el.finished.setAttribute("data-state", title === ENDED ? "ended" : "left");
    // Said once, on the card above (focused, so screen readers read it): the intro's status
    // line and "starts at" are over once the call is.
    setStatus("");
    el.status.hidden = true;
    if (el.when) el.when.hidden = true;
    el.finished.focus();
    /* --- end of the end states block --- */
  }

  window.addEventListener("pagehide", function () {
    if (phase === "joined" || phase === "lobby") send({ type: "leave" });
  });

  window.__room = {
    stats: function () {
      return media ? media.stats() : Promise.resolve({});
    },
    phase: function () {
      return phase;
    },
    peers: function () {
      return media ? media.peers() : [];
    },
    restartIce: function () {
      if (media && media.restartIce) media.restartIce();
    },
    remoteUfrags: function () {
      return media && media.remoteUfrags ? media.remoteUfrags() : {};
    },
    sessionId: function () {
      return sessionId;
    },
    devices: function () {
      return { audio: currentDevice("audio"), video: currentDevice("video") };
    },
    sharing: function () {
      return !!screenTrack;
    },
  };

  // No token is minted before the join rule lets this person in: when the time comes, the
  // page asks the server again (once), which now gives it one.
  var reloading = false;
  setInterval(function () {
    if (phase === "prejoin" && !cfg.token && state === "too_early" && isOpen() && !reloading) {
      reloading = true;
      window.location.reload();
      return;
    }
    if (phase === "prejoin" || phase === "lobby") render();
  }, TICK_MS);

  render();
  checkDevices().catch(function () {
    showProblem("unsupported");
    devicesChecked = true;
    render();
  });
})();
