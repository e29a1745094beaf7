/* The one fallback for Django's JavaScript catalog on the join pages (docs/media.md,
   "Languages"). The page loads /jsi18n/<lang>/ and then this file, before any script that
   shows a text (room.js, stage.js, chat.js, lobby.js, notify.js): when the catalogue did not
   load (a network error, a 500), gettext, ngettext, pgettext and interpolate still exist and
   the page speaks English, the source texts, instead of throwing. When it did load, nothing
   here replaces it. The scripts read window.gettext and friends; none keeps a fallback of its
   own. No build step. */
(function () {
  "use strict";

  window.gettext = window.gettext || function (s) {
    return s;
  };
  window.ngettext = window.ngettext || function (one, many, n) {
    return n === 1 ? one : many;
  };
  window.pgettext = window.pgettext || function (context, s) {
    return s;
  };
  // As Django's: named → %(name)s from an object, else each %s from an array, in order.
  window.interpolate = window.interpolate || function (text, args, named) {
    if (named) {
      return text.replace(/%\(\s*([^)]*)\s*\)s/g, function (m, key) {
        return String(args[key]);
      });
    }
    var rest = Array.prototype.slice.call(args);
    return text.replace(/%s/g, function () {
      return String(rest.shift());
    });
  };
})();
