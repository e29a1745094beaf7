/* The join pages' service worker (served at /join/sw.js, scope /join/): "Notify me on this
   device". A push's payload (calls.outbox.push: cid, type, title, body, tag) holds no patient
   data and no link; a click opens the join page this browser subscribed from, which the page
   stored in Cache Storage under LINKS (by call cid, and the latest under "latest").
   When the push service replaces the subscription (`pushsubscriptionchange`), the worker
   subscribes again if the browser has not, and tells the server for every link this browser
   subscribed from (the page stored, under PUSH_KEY, where to and with which link token), so
   rings keep reaching a patient who never opens the page again.
   The page also stores the title a push without one gets, in the page's language ("title";
   notify.js). */
"use strict";

const LINKS = "join-links";
const LINK_KEY = "/join/sw-link/";
const PUSH_KEY = "/join/sw-push/";

async function storedTitle() {
  const cache = await caches.open(LINKS);
  const answer = await cache.match(LINK_KEY + "title");
  return answer ? answer.text() : "";
}

async function storedLink(cid) {
  const cache = await caches.open(LINKS);
  for (const key of [cid ? LINK_KEY + encodeURIComponent(cid) : null, LINK_KEY + "latest"]) {
    if (!key) continue;
    const answer = await cache.match(key);
    if (answer) return answer.text();
  }
  return null;
}

function keyBytes(key) {
  const base64 = key.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - key.length % 4) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

async function storedRegistrations() {
  const cache = await caches.open(LINKS);
  const found = [];
  for (const request of await cache.keys()) {
    if (!new URL(request.url).pathname.startsWith(PUSH_KEY)) continue;
    try {
      const where = await (await cache.match(request)).json();
      if (typeof where.url === "string" && typeof where.t === "string") found.push({ request, where });
    } catch (error) {
      await cache.delete(request); // not ours, or from an older page: nothing to tell
    }
  }
  return found;
}

/* The subscription changed: `newSubscription` when the browser made one, else one made here
   with the old one's key (or the key the page stored, when the browser gives no old one).
   Each link this browser subscribed from registers the new endpoint, replacing the old one
   (`replaces`: the server drops it in the same transaction). A link that stopped working is
   forgotten. Returns how many links took the new subscription. */
async function renewPushSubscription(oldSubscription, newSubscription) {
  const stored = await storedRegistrations();
  let fresh = newSubscription;
  if (!fresh) {
    const oldKey = oldSubscription && oldSubscription.options &&
      oldSubscription.options.applicationServerKey;
    const storedKey = stored.map(({ where }) => where.key).find((key) => typeof key === "string");
    const key = oldKey || (storedKey && keyBytes(storedKey));
    if (!key) return 0; // nothing to subscribe with: the page subscribes on the next visit
    fresh = await self.registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: key,
    });
  }
  const cache = await caches.open(LINKS);
  let told = 0;
  for (const { request, where } of stored) {
    const body = { t: where.t, subscription: fresh.toJSON() };
    if (oldSubscription && oldSubscription.endpoint !== fresh.endpoint) {
      body.replaces = oldSubscription.endpoint;
    }
    try {
      const answer = await fetch(where.url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
      if (answer.ok) told += 1;
      else if (answer.status === 403) await cache.delete(request); // the link no longer works
    } catch (error) {
      // Offline: the page registers the subscription again on its next visit.
    }
  }
  return told;
}
// Chromium never fires pushsubscriptionchange (Firefox does); the browser tests call this
// as the event would.
self.renewPushSubscription = renewPushSubscription;

self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(renewPushSubscription(event.oldSubscription, event.newSubscription));
});

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {};
  }
  const text = (value) => (typeof value === "string" ? value.slice(0, 200) : "");
  const options = {
    body: text(data.body),
    data: { cid: text(data.cid), type: text(data.type) },
    requireInteraction: data.type === "call.ring",
  };
  if (text(data.tag)) {
    options.tag = text(data.tag);
    options.renotify = true;
  }
  // A push always carries its title (in the person's language); the stored one is a fallback.
  event.waitUntil((async () => {
    const title = text(data.title) || text(await storedTitle()) || "Video appointment";
    return self.registration.showNotification(title, options);
  })());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const cid = (event.notification.data || {}).cid;
  event.waitUntil((async () => {
    const link = await storedLink(cid);
    if (!link) return;
    const target = new URL(link);
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).pathname === target.pathname && "focus" in client) {
        return client.focus();
      }
    }
    return self.clients.openWindow(link);
  })());
});
