/* In-call chat (room.html's #chat-panel): the panel, the transcript so far, new messages marked
   on the Chat button while the panel is closed. Messages go through the call socket (room.js
   sends `chat`; the server stores it and sends it to everyone in the call, the sender included).
   No build step.

     var chat = RoomChat.create({send: fn(text) → bool, onNew: fn(message), timeFormat: Intl})
     chat.load(messages, ownUserId)   // `joined.chat`: the transcript so far
     chat.add(message)                // a `chat` from the server
     chat.toggle() / chat.close() / chat.isOpen()
     chat.unread()                    // how many arrived while closed */
(function () {
  "use strict";

  // Django's JavaScript catalog, or join/i18n.js's fallback when it did not load.
  var _ = window.gettext;
  var ngettext = window.ngettext;
  var fmt = window.interpolate;

  // Numbers in the page's language (<html lang>, the language its texts are in).
  var number = new Intl.NumberFormat(document.documentElement.lang || undefined);

  function $(id) {
    return document.getElementById(id);
  }

  function create(options) {
    var panel = $("chat-panel");
    var log = $("chat-log");
    var empty = $("chat-empty");
    var form = $("chat-form");
    var input = $("chat-input");
    var button = $("chat-toggle");
    var badge = $("chat-badge");
    var close = $("chat-close");
    var me = null;
    var seen = {};
    var count = 0;

    function isOpen() {
      return !panel.hidden;
    }

    function setUnread(n) {
      count = n;
      badge.hidden = n === 0;
      badge.textContent = n ? number.format(n) : "";
      button.classList.toggle("has-unread", n > 0);
      var label = n
        ? fmt(ngettext("Chat (%(n)s new message)", "Chat (%(n)s new messages)", n), { n: number.format(n) }, true)
        : _("Chat");
      button.setAttribute("aria-label", label);
    }

    function scrollDown() {
      log.scrollTop = log.scrollHeight;
    }

    function render(message) {
      if (seen[message.id]) return null;
      seen[message.id] = true;
      var mine = me !== null && message.user && message.user.id === me;
      var item = document.createElement("li");
      item.className = mine ? "is-mine" : "";
      item.setAttribute("data-id", String(message.id));
      var meta = document.createElement("span");
      meta.className = "chat-meta";
      var who = mine ? _("You") : (message.user && message.user.name) || _("Someone");
      var at = message.created_at ? options.timeFormat.format(new Date(message.created_at)) : "";
      meta.textContent = who + (at ? " · " + at : "");
      var text = document.createElement("span");
      text.className = "chat-text";
      text.dir = "auto"; // a message keeps its own direction (French in an Arabic page)
      text.textContent = message.text; // text, never HTML
      item.appendChild(meta);
      item.appendChild(text);
      log.appendChild(item);
      empty.hidden = true;
      return { mine: mine, who: who };
    }

    function load(messages, ownUserId) {
      me = ownUserId;
      (messages || []).forEach(render);
      scrollDown();
    }

    function add(message) {
      var shown = render(message);
      if (!shown) return;
      scrollDown();
      if (!shown.mine && (!isOpen() || document.hidden)) {
        setUnread(count + 1);
        if (options.onNew) options.onNew(shown.who);
      }
    }

    function open() {
      panel.hidden = false;
      button.setAttribute("aria-expanded", "true");
      setUnread(0);
      scrollDown();
      input.focus();
    }

    function shut(refocus) {
      if (panel.hidden) return;
      panel.hidden = true;
      button.setAttribute("aria-expanded", "false");
      if (refocus) button.focus();
    }

    button.addEventListener("click", function () {
      if (isOpen()) shut(false);
      else {
        if (options.onOpen) options.onOpen();
        open();
      }
    });
    close.addEventListener("click", function () {
      shut(true);
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      if (options.send(text)) input.value = "";
    });

    return {
      load: load,
      add: add,
      toggle: function () {
        button.click();
      },
      close: function () {
        shut(false);
      },
      isOpen: isOpen,
      unread: function () {
        return count;
      },
      reset: function () {
        log.textContent = "";
        seen = {};
        empty.hidden = false;
        setUnread(0);
        shut(false);
      },
    };
  }

  window.RoomChat = { create: create };
})();
