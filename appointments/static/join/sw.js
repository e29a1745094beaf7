/* The join pages' service worker (served at /join/sw.js, scope /join/): "Notify me on this
   device". A push's payload (calls.outbox.push: cid, type, title, body, tag) holds no patient
   data and no link; a click opens the join page this browser subscribed from, which the page
   stored in Cache Storage under LINKS (by call cid, and the latest under "latest"), beside the
   title a push without one gets, in the page's language ("title"; notify.js). */
"use strict";

const LINKS = "join-links";
const LINK_KEY = "/join/sw-link/";

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
