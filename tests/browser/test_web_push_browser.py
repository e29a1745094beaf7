"""Web Push to a browser that has only the join link, end to end in Chromium: the patient
subscribes on the join page ("Notify me on this device"), staff ring the call and take it
live, our server's
push goes to the push service (`tests/gcm.py`, Google's push service for Chromium on this
machine: checkin, registration, MCS and the https endpoint), reaches Chromium over its MCS
socket, is decrypted there, and the join pages' service worker shows the notification.

Chromium runs with a persistent profile (push is refused in off-the-record contexts) and
notifications granted; its GCM client is pointed at the stand-in by its `--gcm-*` switches.
Our server posts to the endpoint Chromium made (https://jmt17.google.com/fcm/send/…): the
test resolves that name to the stand-in's loopback address and trusts its certificate."""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from appointments.links import guest_link_path, join_link_path
from appointments.services.guests import appointment_guest_invite
from calls import netguard
from calls.capabilities import Actor
from calls.models import PushDelivery, PushDevice
from calls.outbox.push import delivery
from calls.services.live import call_go_live
from calls.services.ringing import call_ring
from tests.calls.push.standins import vapid_keypair
from tests.factories import make_appointment
from tests.gcm import PUSH_HOSTS, GcmService

from .conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.django_db(transaction=True)

NOTIFICATIONS = """async () => {
    const registration = await navigator.serviceWorker.getRegistration("/join/");
    if (!registration) return [];
    const shown = await registration.getNotifications();
    return shown.map((n) => ({title: n.title, body: n.body, tag: n.tag, data: n.data}));
}"""
STORED_LINK = """async (cid) => {
    const cache = await caches.open("join-links");
    const answer = await cache.match("/join/sw-link/" + encodeURIComponent(cid));
    return answer ? answer.text() : null;
}"""


@pytest.fixture
def gcm(settings, monkeypatch):
    """The push service, with our server's Web Push pointed at it: VAPID keys, the push hosts
    resolved to the stand-in's loopback address (the SSRF guard allows it: private networks
    on, as for every stand-in), its certificate trusted."""
    # A loopback address of its own (port 443 is the endpoint's), apart from parallel runs.
    address = ".".join(["127", *(str(2 + secrets.randbelow(250)) for _ in range(3))])
    service = GcmService(push_address=address)
    service.start()
    private_key, _public = vapid_keypair()
    settings.WEBPUSH_VAPID_PRIVATE_KEY = private_key
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@clinic.example"
    settings.WEBPUSH_ALLOW_PRIVATE_NETWORKS = True
    settings.CALLS_EVENT_CONSUMERS = ["calls.outbox.push.dispatch.on_event"]
    real_getaddrinfo = netguard.socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real_getaddrinfo(address if host in PUSH_HOSTS else host, *args, **kwargs)

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)
    if service.push_port != 443:  # not root: the stand-in could not bind 443
        real_check_url = netguard.check_url

        def check_url(url, **kwargs):
            target = real_check_url(url, **kwargs)
            if target.hostname not in PUSH_HOSTS:
                return target
            return dataclasses.replace(target, url=target.url.copy_with(port=service.push_port))

        monkeypatch.setattr(netguard, "check_url", check_url)
    monkeypatch.setenv("SSL_CERT_FILE", service.cert_path)
    netguard._ssl_context_for.cache_clear()
    delivery._build.cache_clear()
    yield service
    delivery._build.cache_clear()
    netguard._ssl_context_for.cache_clear()
    service.stop()
    assert service.errors == [], "the push service saw protocol errors"


@pytest.fixture
def push_browser(browser, console, gcm):
    """Chromium with a persistent profile, notifications granted, GCM on the stand-in."""
    contexts = []

    def open_page(width: int = 1280, height: int = 900):
        context = browser.browser_type.launch_persistent_context(
            tempfile.mkdtemp(prefix="push-profile-"),
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, *gcm.chromium_args()],
            permissions=["notifications"],
            viewport={"width": width, "height": height},
        )
        contexts.append(context)
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_page_error)
        return page

    yield open_page
    for context in contexts:
        context.close()


def wait_for_notifications(page, count: int = 1, timeout: float = 45) -> list[dict]:
    """The notifications the service worker shows, once there are `count` (or at the end of
    `timeout`, whatever there is). Usually within a second; on a loaded machine Chromium has
    taken over 15 s to wake the service worker for a push it had received."""
    deadline = time.monotonic() + timeout
    while len(shown := page.evaluate(NOTIFICATIONS)) < count and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    return shown


def test_a_patient_subscribes_on_the_join_page_and_a_ring_reaches_the_browser(
    app_server, push_browser, gcm, console, artifacts, eager_tasks, clinic, doctor, patient
):
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=timezone.now() + timedelta(minutes=3)
    )
    url = f"{app_server.url}{join_link_path(appointment)}"
    page = push_browser(width=1366, height=768)
    page.goto(url)
    toggle = page.locator("#notify-toggle")
    assert toggle.inner_text() == "Notify me on this device"
    toggle.click()
    page.wait_for_selector("#notify[data-subscribed='true']")
    assert "Notifications are on" in page.locator("#notify-status").inner_text()
    page.screenshot(path=str(artifacts / "webpush-patient-1366.png"), full_page=True)

    # Chromium checked in, registered with our key as the sender, logged in over MCS.
    assert gcm.wait(lambda: gcm.connections, timeout=15), "Chromium never logged in to MCS"
    (registration,) = gcm.web_push_registrations()
    device = PushDevice.objects.get()
    assert device.user_id == patient.call_user_id
    assert device.kind == "webpush"
    assert device.token == f"https://{PUSH_HOSTS[0]}/fcm/send/{registration.token}"
    assert set(device.keys) == {"p256dh", "auth"}
    # The service worker will open this page on a click: stored in the browser, not pushed.
    assert page.evaluate(STORED_LINK, appointment.call_cid) == url
    # Back on the page later: it knows this browser is subscribed, and says so again to the
    # server (the same device).
    page.reload()
    page.wait_for_selector("#notify[data-subscribed='true']")
    assert toggle.inner_text() == "Stop notifications on this device"
    assert list(PushDevice.objects.values_list("pk", flat=True)) == [device.pk]

    # Staff ring the call: the push goes out, through the push service, to Chromium.
    call_ring(actor=Actor.of(doctor.call_user), type_name="appointment", call_id=appointment.id)
    assert gcm.wait(lambda: any(p.forwarded for p in gcm.pushes), timeout=15)
    (shown,) = wait_for_notifications(page)
    assert shown["tag"].startswith("ring-")
    assert shown["data"] == {"cid": appointment.call_cid, "type": "call.ring"}
    token = url.split("t=", 1)[1]
    assert token not in repr(shown)
    assert patient.name not in repr(shown)
    assert (shown["title"], shown["body"]) == ("Incoming call", "Tap to answer.")

    # The clinician takes the call live ("your clinician is ready"): a second notification.
    call_go_live(actor=Actor.of(doctor.call_user), type_name="appointment", call_id=appointment.id)
    shown = wait_for_notifications(page, 2)
    assert {n["title"] for n in shown} == {"Incoming call", "Your call is live"}
    assert {n["data"]["type"] for n in shown} == {"call.ring", "call.live_started"}
    assert list(PushDelivery.objects.filter(device=device).values_list("state", flat=True)) == [
        PushDelivery.State.SENT,
        PushDelivery.State.SENT,
    ]

    # Stopping removes the device here, and the subscription in the browser.
    toggle.click()
    page.wait_for_selector("#notify[data-subscribed='false']")
    assert not PushDevice.objects.exists()
    assert (
        page.evaluate("navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription())")
        is None
    )
    assert console.errors == []


def test_a_guest_subscribes_for_themselves_and_a_ring_reaches_them(
    app_server, push_browser, gcm, console, artifacts, eager_tasks, clinic, doctor, patient
):
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=timezone.now() + timedelta(minutes=3)
    )
    guest = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    page = push_browser(width=390, height=844)
    page.goto(f"{app_server.url}{guest_link_path(guest)}")
    page.locator("#notify-toggle").click()
    page.wait_for_selector("#notify[data-subscribed='true']")
    page.screenshot(path=str(artifacts / "webpush-guest-390.png"), full_page=True)
    device = PushDevice.objects.get()
    assert device.user_id == guest.call_user_id  # the guest's, never the patient's

    assert gcm.wait(lambda: gcm.connections, timeout=15)
    call_ring(
        actor=Actor.of(doctor.call_user),
        type_name="appointment",
        call_id=appointment.id,
        members_ids=[guest.call_user_id],
    )
    (shown,) = wait_for_notifications(page)
    assert shown["data"]["cid"] == appointment.call_cid
    assert console.errors == []


RENEW = """async () => {
    const old = await self.registration.pushManager.getSubscription();
    await old.unsubscribe();  // the push service dropped it
    const told = await self.renewPushSubscription(old, null);
    const fresh = await self.registration.pushManager.getSubscription();
    return {told, old: old.endpoint, fresh: fresh && fresh.endpoint};
}"""


def test_a_replaced_subscription_is_renewed_by_the_service_worker_and_rings_still_arrive(
    app_server, push_browser, gcm, console, eager_tasks, clinic, doctor, patient
):
    """`pushsubscriptionchange`: the push service replaced the subscription while no join
    page was open. The service worker subscribes again with the same key and registers the
    new endpoint through the link it stored, replacing the old device; the next ring reaches
    the browser through the new subscription. (Chromium never fires the event itself: the
    test calls the worker's handler as the event would.)"""
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=timezone.now() + timedelta(minutes=3)
    )
    page = push_browser(width=1280, height=800)
    page.goto(f"{app_server.url}{join_link_path(appointment)}")
    page.locator("#notify-toggle").click()
    page.wait_for_selector("#notify[data-subscribed='true']")
    old_device = PushDevice.objects.get()
    assert gcm.wait(lambda: gcm.connections, timeout=15), "Chromium never logged in to MCS"

    (worker,) = page.context.service_workers
    renewed = worker.evaluate(RENEW)
    assert renewed["told"] == 1
    assert renewed["old"] == old_device.token
    assert renewed["fresh"]
    assert renewed["fresh"] != renewed["old"]
    (device,) = PushDevice.objects.all()
    assert (device.user_id, device.token) == (patient.call_user_id, renewed["fresh"])
    # Made with the push service, with our key as the sender (the old one was unregistered).
    fresh = {f"https://{PUSH_HOSTS[0]}/fcm/send/{r.token}" for r in gcm.web_push_registrations()}
    assert renewed["fresh"] in fresh

    call_ring(actor=Actor.of(doctor.call_user), type_name="appointment", call_id=appointment.id)
    (shown,) = wait_for_notifications(page)
    assert shown["data"] == {"cid": appointment.call_cid, "type": "call.ring"}
    assert PushDelivery.objects.get().device_id == device.pk
    assert console.errors == []
