"""Webhook hardening: the SSRF guard (at save time, and at send time against DNS rebinding,
with TLS still verified on the hostname) and the admin's resend of dead deliveries.

No test reaches the internet: public addresses are checked, never connected to; deliveries go
to the local receiver (webhook_receiver.py), reached by name through a stand-in resolver."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.utils import timezone

from calls import netguard
from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint
from calls.outbox import webhooks
from tests.calls.webhook_receiver import Receiver, create_call, only_delivery, sweep_at
from tests.factories import CallFactory, login_verified

State = WebhookDelivery.State
HOST = "hooks.clinic.test"  # resolves nowhere but through the stand-in resolver


class Dns:
    """A stand-in resolver: names → addresses, changeable between lookups (rebinding)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.records: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        monkeypatch.setattr(netguard, "resolve", self.resolve)

    def resolve(self, hostname: str, port: int, *, timeout: float = 5.0) -> tuple:
        self.lookups.append(hostname)
        if hostname not in self.records:
            raise netguard.ResolveError(f"could not resolve {hostname}")
        return tuple(ipaddress.ip_address(a) for a in self.records[hostname])


@pytest.fixture
def dns(monkeypatch):
    return Dns(monkeypatch)


def endpoint(url: str, **kwargs) -> WebhookEndpoint:
    """Stored without validation: as if saved while the rules or the DNS answer differed."""
    return WebhookEndpoint.objects.create(url=url, **kwargs)


def named(url: str, host: str = HOST) -> str:
    return url.replace("127.0.0.1", host)


# --- the rules, on addresses ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private network"),
        ("172.16.0.9", "private network"),
        ("192.168.1.20", "private network"),
        ("fd12:3456::1", "private network"),
        ("100.64.0.1", "CGNAT"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::ffff:127.0.0.1", "loopback address, embedded in an IPv6 address"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a00:1", "private network"),
    ],
)
def test_refused_addresses_name_their_rule(address, rule):
    refusal = netguard.address_refusal(ipaddress.ip_address(address), allow_private=False)
    assert refusal is not None
    assert rule in refusal


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_accepted(address):
    assert netguard.address_refusal(ipaddress.ip_address(address), allow_private=False) is None
    netguard.check_addresses(HOST, (ipaddress.ip_address(address),), allow_private=False)


def test_private_networks_setting_opens_the_intranet_but_never_metadata():
    def refusal(address: str) -> str | None:
        return netguard.address_refusal(ipaddress.ip_address(address), allow_private=True)

    for address in ("127.0.0.1", "::1", "10.0.0.7", "192.168.1.2", "fd00::5", "100.64.3.4"):
        assert refusal(address) is None, address
    for address in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254", "fe80::1", "::"):
        assert refusal(address) is not None, address


def test_one_private_address_among_public_ones_refuses_the_host():
    addresses = (ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.5"))
    with pytest.raises(netguard.Refused, match=r"hooks\.clinic\.test resolves to 10\.0\.0\.5"):
        netguard.check_addresses(HOST, addresses, allow_private=False)


# --- the rules, on URLs (save time) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1/hooks", "127.0.0.1, a loopback address"),
        ("https://10.20.30.40:8443/hooks", "10.20.30.40, a private network address"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[::1]:8443/hooks", "::1, a loopback address"),
        ("https://localhost/hooks", "localhost resolves to 127.0.0.1, a loopback address"),
        ("https://2130706433/hooks", "resolves to 127.0.0.1"),  # 127.0.0.1 as one number
        ("http://8.8.8.8/hooks", "must use https (http is off: WEBHOOKS_ALLOW_HTTP)"),
        ("ftp://8.8.8.8/hooks", "the URL must use https."),
    ],
)
@pytest.mark.django_db
def test_saving_an_endpoint_refuses_non_public_targets(settings, url, message):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(ValidationError) as refused:
        WebhookEndpoint(url=url).full_clean()
    assert message in " ".join(refused.value.message_dict["url"])


@pytest.mark.django_db
def test_saving_accepts_public_targets_and_names_the_setting_for_private_ones(settings):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    WebhookEndpoint(url="https://93.184.215.14/hooks").full_clean()  # checked, not contacted
    WebhookEndpoint(url="https://[2606:4700::1111]:8443/hooks").full_clean()
    with pytest.raises(ValidationError, match="WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true"):
        WebhookEndpoint(url="https://192.168.1.20/hooks").full_clean()
    with pytest.raises(ValidationError, match=r"could not resolve hooks\.invalid"):
        WebhookEndpoint(url="https://hooks.invalid/hooks").full_clean()

    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    WebhookEndpoint(url="https://192.168.1.20/hooks").full_clean()
    WebhookEndpoint(url="https://localhost:8443/hooks").full_clean()
    with pytest.raises(ValidationError, match="cloud metadata"):
        WebhookEndpoint(url="https://169.254.169.254/").full_clean()


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "", "pw-for-tests-only")
    login_verified(client, user)
    return client


@pytest.mark.django_db
def test_the_admin_form_shows_the_rule(admin_client, settings):
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    form = {"url": "https://localhost:8443/hooks", "event_types": "[]", "active": "on"}

    response = admin_client.post("/admin/calls/webhookendpoint/add/", form)

    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors["url"]
    assert errors == [
        "Refused: localhost resolves to 127.0.0.1, a loopback address. "
        "Set WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true to deliver inside your own network."
    ]
    assert not WebhookEndpoint.objects.exists()

    form["url"] = "https://93.184.215.14/hooks"
    response = admin_client.post("/admin/calls/webhookendpoint/add/", form)
    assert response.status_code == 302
    assert WebhookEndpoint.objects.get().url == "https://93.184.215.14/hooks"


# --- send time ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_delivery_to_a_refused_address_is_dead_without_reaching_it(hook_settings, receiver):
    """Saved while private networks were on (or by hand): the attempt itself refuses."""
    endpoint(receiver.url)
    hook_settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    start = timezone.now()
    create_call()

    delivery = only_delivery()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.DEAD, 1, None)
    assert delivery.last_error.startswith("Refused: 127.0.0.1, a loopback address.")
    assert delivery.next_attempt_at is None
    sweep_at(start, 600)  # dead: no retries
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_an_http_endpoint_is_refused_at_send_time_when_http_is_off(hook_settings, receiver):
    endpoint(receiver.url)
    hook_settings.WEBHOOKS_ALLOW_HTTP = False
    create_call()

    delivery = only_delivery()
    assert delivery.state == State.DEAD
    assert "http is off" in delivery.last_error
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_dns_rebinding_after_saving_is_refused(hook_settings, receiver, dns):
    """Public when saved, loopback when sent: the address checked is the one used."""
    hook_settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    url = named(receiver.url)
    dns.records[HOST] = ["93.184.215.14"]
    hook = WebhookEndpoint(url=url)
    hook.full_clean()
    hook.save()

    dns.records[HOST] = ["127.0.0.1"]
    create_call()

    delivery = only_delivery()
    assert delivery.state == State.DEAD
    assert delivery.last_error.startswith(f"Refused: {HOST} resolves to 127.0.0.1, a loopback")
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_the_checked_address_is_the_one_connected_to(hook_settings, receiver, dns, monkeypatch):
    """The name resolves only through the guard's lookup: the POST arrives, so the client made
    no lookup of its own (nor went through a proxy, which would look it up again); the Host
    header still names the host."""
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    dns.records[HOST] = ["127.0.0.1"]
    endpoint(named(receiver.url))
    create_call()

    delivery = only_delivery()
    assert (delivery.state, delivery.last_status) == (State.DELIVERED, 200)
    ((headers, _),) = receiver.requests
    assert headers["Host"] == f"{HOST}:{receiver.port}"
    assert dns.lookups == [HOST]


@pytest.mark.django_db(transaction=True)
def test_an_unresolvable_host_is_retried(hook_settings, receiver, dns):
    endpoint(named(receiver.url))
    create_call()

    delivery = only_delivery()
    assert (delivery.state, delivery.last_error) == (
        State.RETRYING,
        "network error: DNS lookup failed",
    )


def test_a_hanging_dns_lookup_gives_up_after_the_timeout(monkeypatch):
    """getaddrinfo has no timeout of its own: the guard stops waiting for it."""
    release = threading.Event()

    def hanging(*args, **kwargs):
        release.wait(10)
        return []

    monkeypatch.setattr(netguard.socket, "getaddrinfo", hanging)
    started = time.monotonic()
    try:
        with pytest.raises(netguard.ResolveError, match=r"within 0\.3 s"):
            netguard.resolve(HOST, 443, timeout=0.3)
        assert time.monotonic() - started < 5
    finally:
        release.set()


@pytest.mark.django_db(transaction=True)
def test_a_hanging_lookup_makes_the_delivery_retry(hook_settings, receiver, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(netguard, "RESOLVE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(netguard.socket, "getaddrinfo", lambda *a, **k: release.wait(10) and [])
    try:
        endpoint(named(receiver.url))
        create_call()
    finally:
        release.set()

    delivery = only_delivery()
    assert (delivery.state, delivery.last_error) == (
        State.RETRYING,
        "network error: DNS lookup failed",
    )
    assert receiver.requests == []


# --- TLS: connect to the address, verify the name -------------------------------------------


def _certificate(name: str, key, issuer: x509.Name, signer, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def _pem(data) -> bytes:
    if isinstance(data, x509.Certificate):
        return data.public_bytes(serialization.Encoding.PEM)
    return data.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A test CA, and certificates it signed for HOST and for another name."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook test CA")])
    ca_cert = _certificate("webhook test CA", ca_key, ca_name, ca_key, ca=True)
    (folder / "ca.pem").write_bytes(_pem(ca_cert))
    for label, name in (("right", HOST), ("wrong", "elsewhere.clinic.test")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(name, key, ca_name, ca_key, ca=False)
        (folder / f"{label}.pem").write_bytes(_pem(cert) + _pem(key))
    return folder


def _tls_receiver(tls_files, label: str) -> Receiver:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / f"{label}.pem")
    server = Receiver()
    server.start(host=HOST, ssl_context=context)
    return server


@pytest.fixture
def https_receivers(tls_files, settings, monkeypatch):
    """Receivers on 127.0.0.1 with certificates for HOST (right) and another name (wrong);
    the webhook client trusts the test CA (httpx reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files / "ca.pem"))
    servers = {label: _tls_receiver(tls_files, label) for label in ("right", "wrong")}
    for server in servers.values():
        server.reset(settings.CALLS_API_SECRET)
    yield servers
    for server in servers.values():
        server.stop()


@pytest.mark.django_db(transaction=True)
def test_https_connects_to_the_address_and_verifies_the_hostname(
    hook_settings, dns, https_receivers
):
    hook_settings.WEBHOOKS_ALLOW_HTTP = False
    dns.records[HOST] = ["127.0.0.1"]
    right, wrong = https_receivers["right"], https_receivers["wrong"]
    endpoint(right.url)
    endpoint(wrong.url)
    create_call()

    delivered = WebhookDelivery.objects.get(endpoint__url=right.url)
    assert (delivered.state, delivered.last_status) == (State.DELIVERED, 200)
    assert right.server_names == [HOST]  # SNI: the hostname, not the address
    ((headers, _),) = right.requests
    assert headers["Host"] == f"{HOST}:{right.port}"

    # A certificate for another name fails verification: retried, never posted.
    refused = WebhookDelivery.objects.get(endpoint__url=wrong.url)
    assert refused.state == State.RETRYING
    assert refused.last_error.startswith("network error")
    assert wrong.server_names == [HOST]
    assert wrong.requests == []


# --- resend from the admin ------------------------------------------------------------------


def resend(client, *ids: int):
    return client.post(
        "/admin/calls/webhookdelivery/",
        {"action": "resend", "_selected_action": [str(pk) for pk in ids], "index": "0"},
        follow=True,
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db(transaction=True)
def test_the_admin_resends_a_dead_delivery_with_the_same_webhook_id(
    hook_settings, receiver, admin_client
):
    endpoint(receiver.url)
    receiver.statuses = [410]  # dead at once
    create_call()
    dead = only_delivery()
    assert (dead.state, dead.attempts) == (State.DEAD, 1)

    response = resend(admin_client, dead.pk)

    assert response.status_code == 200
    assert messages_of(response) == ["Requeued 1 webhook delivery for resending."]
    delivery = only_delivery()
    assert (delivery.state, delivery.attempts, delivery.last_status) == (State.DELIVERED, 1, 200)
    assert delivery.webhook_id == dead.webhook_id
    assert receiver.ids() == [dead.webhook_id] * 2
    assert receiver.attempts() == ["1", "1"]  # a fresh attempt budget
    assert len(receiver.processed) == 1


@pytest.mark.django_db(transaction=True)
def test_resend_gets_a_fresh_budget_and_the_sweep_sends_a_lost_enqueue(
    hook_settings, receiver, admin_client, monkeypatch
):
    endpoint(receiver.url)
    receiver.statuses = [500] * 4
    start = timezone.now()
    create_call()
    for seconds in (3, 10, 30):
        sweep_at(start, seconds)
    delivery = only_delivery()
    assert (delivery.state, delivery.attempts) == (State.DEAD, 4)

    monkeypatch.setattr(webhooks, "_enqueue_batch", lambda ids: None)  # the broker lost it
    assert messages_of(resend(admin_client, delivery.pk)) == [
        "Requeued 1 webhook delivery for resending."
    ]
    monkeypatch.undo()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.PENDING, 0)

    assert sweep_at(timezone.now(), 31) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.DELIVERED, 1)
    assert receiver.attempts() == ["1", "2", "3", "4", "1"]
    assert set(receiver.ids()) == {delivery.webhook_id}


@pytest.mark.django_db(transaction=True)
def test_resend_skips_delivered_rows_and_inactive_endpoints(hook_settings, receiver, admin_client):
    endpoint(receiver.url)
    create_call("visit-1")
    delivered = only_delivery()
    off = endpoint("https://93.184.215.14/off", active=False)
    stale = WebhookDelivery.objects.create(
        endpoint=off, event=delivered.event, webhook_id="wh-off", state=State.DEAD, attempts=5
    )

    response = resend(admin_client, delivered.pk, stale.pk)

    assert messages_of(response) == [
        "Requeued 0 webhook deliveries for resending.",
        "Skipped 2: only dead or retrying deliveries of active endpoints are resent.",
    ]
    assert WebhookDelivery.objects.get(pk=stale.pk).state == State.DEAD
    assert WebhookDelivery.objects.get(pk=delivered.pk).state == State.DELIVERED
    assert len(receiver.requests) == 1


def dead_delivery(**fields) -> WebhookDelivery:
    """A dead delivery of a `call.created` to a public endpoint (made by hand: no relay)."""
    call = CallFactory()
    event = CallEvent.objects.create(
        call=call, call_cid=call.cid, type="call.created", payload={}, created_at=timezone.now()
    )
    return WebhookDelivery.objects.create(
        endpoint=endpoint("https://93.184.215.14/hooks"),
        event=event,
        webhook_id="wh-1",
        state=State.DEAD,
        attempts=5,
        **fields,
    )


def log_in_viewer(client):
    """A staff user who may only view webhook deliveries."""
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(viewer)
    return viewer


@pytest.mark.django_db
def test_resend_needs_the_change_permission(client, settings):
    settings.CALLS_EVENT_CONSUMERS = []
    dead = dead_delivery()
    viewer = log_in_viewer(client)

    page = client.get("/admin/calls/webhookdelivery/")
    assert page.status_code == 200
    assert 'value="resend"' not in page.content.decode()
    resend(client, dead.pk)
    dead.refresh_from_db()
    assert (dead.state, dead.attempts) == (State.DEAD, 5)

    viewer.user_permissions.add(Permission.objects.get(codename="change_webhookdelivery"))
    viewer = get_user_model().objects.get(pk=viewer.pk)  # fresh permission cache
    client.force_login(viewer)
    assert 'value="resend"' in client.get("/admin/calls/webhookdelivery/").content.decode()


@pytest.mark.django_db
def test_the_receivers_answer_is_shown_to_superusers_only(client, admin_client, settings):
    settings.CALLS_EVENT_CONSUMERS = []
    dead = dead_delivery(
        last_status=422, last_response="unknown call type: echoing your payload back"
    )
    page = f"/admin/calls/webhookdelivery/{dead.pk}/change/"
    assert "echoing your payload back" in admin_client.get(page).content.decode()

    log_in_viewer(client)
    response = client.get(page)
    assert response.status_code == 200
    assert "wh-1" in response.content.decode()
    assert "echoing your payload back" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_huge_answer_is_read_no_further_than_the_cap(hook_settings, receiver):
    endpoint(receiver.url)
    receiver.statuses = [500]
    receiver.body = b"x" * (netguard.MAX_RESPONSE_BYTES * 4)

    body = b"{}"
    headers = {
        "X-Webhook-Id": "wh-direct",
        "X-Signature": webhooks.sign(body, hook_settings.CALLS_API_SECRET),
    }
    answer = netguard.post(
        receiver.url,
        content=body,
        headers=headers,
        timeout=2.0,
        allow_http=True,
        allow_private=True,
    )
    assert answer.status_code == 500
    assert len(answer.content) == netguard.MAX_RESPONSE_BYTES

    receiver.statuses = [500]
    create_call()
    delivery = only_delivery()
    assert delivery.last_response == "x" * webhooks.RESPONSE_EXCERPT


@pytest.mark.django_db(transaction=True)
def test_the_ca_bundle_is_loaded_once_per_process(hook_settings, receiver, monkeypatch):
    """Loading the CA store cost more than the rest of a push's delivery (bench/push.py)."""
    made = []
    real = httpx.create_ssl_context
    netguard._ssl_context_for.cache_clear()
    monkeypatch.setattr(
        httpx, "create_ssl_context", lambda *a, **k: made.append(1) or real(*a, **k)
    )
    receiver.statuses = [200, 200]
    headers = {
        "X-Webhook-Id": "wh-direct",
        "X-Signature": webhooks.sign(b"{}", hook_settings.CALLS_API_SECRET),
    }
    for _ in range(2):
        answer = netguard.post(
            receiver.url,
            content=b"{}",
            headers=headers,
            timeout=2.0,
            allow_http=True,
            allow_private=True,
        )
        assert answer.status_code == 200
    assert len(made) == 1
