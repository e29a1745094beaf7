/* "Notify me on this device" on the join page (templates/join/notify.html; notify.py).
   Shown only where the browser can: a secure page with service workers, the Push API and
   notifications. Subscribing registers /join/sw.js, asks for permission, subscribes with the
   clinic server's VAPID key, stores this page's URL for the service worker (a notification
   click opens it: pushes never carry the link) and sends the subscription to the server with
   the link's token; stopping removes it on both sides (and what the page stored). The service
   worker has no page to translate with: the page stores, beside the link, the title a push
   without one gets, in the page's language (Django's JavaScript catalog). */
"use strict";

(function () {
  const box = document.getElementById("notify");
  if (!box) return;
  const supported = window.isSecureContext && "serviceWorker" in navigator &&
    "PushManager" in window && "Notification" in window && "caches" in window;
  if (!supported || !box.dataset.key) return;

  const button = document.getElementById("notify-toggle");
  const status = document.getElementById("notify-status");
  const text = box.dataset;
  const token = new URLSearchParams(window.location.search).get("t") || "";
  const LINKS = "join-links";
  const LINK_KEY = "/join/sw-link/";
  const PUSH_KEY = "/join/sw-push/";
  const _ = window.gettext; // the catalogue's, or join/i18n.js's fallback

  function keyBytes(key) {
    const base64 = key.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - key.length % 4) % 4);
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function show(on, message) {
    box.dataset.subscribed = on ? "true" : "false";
    button.textContent = on ? text.stopLabel : text.startLabel;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    status.textContent = message || (on ? text.on : "");
  }

  async function send(method, body) {
    const answer = await fetch(text.url, {
      method,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ t: token, ...body }),
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (!answer.ok && !(method === "DELETE" && answer.status === 404)) {
      throw new Error("server answered " + answer.status);
    }
  }

  async function registration() {
    await navigator.serviceWorker.register(text.sw, { scope: text.scope });
    return navigator.serviceWorker.ready;
  }

  async function rememberLink() {
    const cache = await caches.open(LINKS);
    const page = new Response(window.location.href, { headers: { "Content-Type": "text/plain" } });
    await cache.put(LINK_KEY + encodeURIComponent(text.cid), page.clone());
    await cache.put(LINK_KEY + "latest", page);
    // For the service worker, should the push service replace the subscription: where this
    // link registers it, with which token and key (sw.js, renewPushSubscription).
    const where = { url: new URL(text.url, window.location.href).href, t: token, key: text.key };
    await cache.put(PUSH_KEY + encodeURIComponent(text.cid), new Response(JSON.stringify(where), {
      headers: { "Content-Type": "application/json" },
    }));
    const title = _("Video appointment");
    await cache.put(LINK_KEY + "title", new Response(title, { headers: { "Content-Type": "text/plain" } }));
  }

  async function start() {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      show(false, text.denied);
      return;
    }
    const ready = await registration();
    let subscription = await ready.pushManager.getSubscription();
    if (subscription) await subscription.unsubscribe(); // perhaps another server's key
    subscription = await ready.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: keyBytes(text.key),
    });
    await rememberLink();
    try {
      await send("POST", { subscription: subscription.toJSON() });
    } catch (error) {
      await subscription.unsubscribe();
      throw error;
    }
    show(true);
  }

  async function stop() {
    const ready = await registration();
    const subscription = await ready.pushManager.getSubscription();
    if (subscription) {
      await send("DELETE", { endpoint: subscription.endpoint });
      await subscription.unsubscribe();
    }
    const cache = await caches.open(LINKS);
    await cache.delete(PUSH_KEY + encodeURIComponent(text.cid));
    show(false, text.off);
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (box.dataset.subscribed === "true") await stop();
      else await start();
    } catch (error) {
      show(box.dataset.subscribed === "true", text.failed);
    } finally {
      button.disabled = false;
    }
  });

  // In the call, the card steps aside (the call screen is the page then).
  const call = document.getElementById("call");
  const follow = () => { box.hidden = Boolean(call && !call.hidden); };
  if (call) new MutationObserver(follow).observe(call, { attributes: true, attributeFilter: ["hidden"] });

  // Already subscribed (from this link or another): this page's link becomes the one a click
  // opens for this call, and the server hears of the subscription again for this link's
  // person (idempotent; it may have dropped the device meanwhile).
  (async () => {
    let subscription = null;
    if (Notification.permission === "granted") {
      const existing = await navigator.serviceWorker.getRegistration(text.scope);
      subscription = existing ? await existing.pushManager.getSubscription() : null;
    }
    show(Boolean(subscription));
    follow();
    if (subscription) {
      try {
        await rememberLink();
        await send("POST", { subscription: subscription.toJSON() });
      } catch (error) {
        // Best effort: the toggle still works, and the next visit tries again.
      }
    }
  })();
})();
