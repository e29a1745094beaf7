"""GET / PATCH /api/v2/app: teams are always on, and the app's own webhook endpoint (Stream's
`webhook_url` / `webhook_events`) is set through the API, checked like one saved in the admin."""

from __future__ import annotations

import pytest

from calls.models import WebhookEndpoint
from tests.calls.webhook_receiver import create_call

from .conftest import assert_error, assert_ok

pytestmark = pytest.mark.django_db

APP = "/api/v2/app"
PUBLIC = "https://93.184.215.14/stream-hooks"  # a public address literal: no DNS needed


def test_the_app_says_teams_are_on_and_has_no_webhook_yet(api, settings):
    app = assert_ok(api.get(APP))["app"]
    assert app["name"] == settings.CALLS_APP_NAME
    assert app["multi_tenant_enabled"] is True
    assert (app["webhook_url"], app["webhook_events"]) == ("", [])


def test_setting_moving_and_removing_the_apps_webhook(api):
    body = {"webhook_url": PUBLIC, "webhook_events": ["call.ended", "call.created"]}
    assert assert_ok(api.patch(APP, body)).keys() == {"duration"}

    [endpoint] = WebhookEndpoint.objects.all()
    assert (endpoint.url, endpoint.team, endpoint.from_app_settings) == (PUBLIC, None, True)
    assert endpoint.event_types == ["call.created", "call.ended"]
    app = assert_ok(api.get(APP))["app"]
    assert (app["webhook_url"], app["webhook_events"]) == (PUBLIC, ["call.created", "call.ended"])

    moved = PUBLIC.replace("stream-hooks", "v2")
    assert_ok(api.patch(APP, {"webhook_url": moved, "webhook_events": []}))
    [endpoint] = WebhookEndpoint.objects.all()  # the same one, moved
    assert (endpoint.url, endpoint.event_types) == (moved, [])

    assert_ok(api.patch(APP, {"webhook_url": ""}))
    assert not WebhookEndpoint.objects.exists()
    assert assert_ok(api.get(APP))["app"]["webhook_url"] == ""


def test_the_admins_endpoints_are_left_alone(api):
    clinic = WebhookEndpoint.objects.create(url=PUBLIC, team="clinic-a")
    assert_ok(api.patch(APP, {"webhook_url": PUBLIC}))
    assert_ok(api.patch(APP, {"webhook_url": ""}))
    assert list(WebhookEndpoint.objects.all()) == [clinic]
    assert assert_ok(api.get(APP))["app"]["webhook_url"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"multi_tenant_enabled": False}, "multi_tenant_enabled"),
        ({"webhook_url": "https://127.0.0.1/hooks"}, "webhook_url"),  # the SSRF guard
        ({"webhook_url": "http://93.184.215.14/hooks"}, "webhook_url"),  # https only
        ({"webhook_url": PUBLIC, "webhook_events": ["call ended"]}, "webhook_events"),
        ({"webhook_events": ["call.ended"]}, "webhook_events"),  # no webhook_url yet
        ({"sqs_url": "https://sqs.example/q"}, "sqs_url"),
    ],
    ids=["tenancy-off", "loopback", "http", "bad-event", "events-alone", "unsupported"],
)
def test_bad_settings_are_400_and_change_nothing(api, settings, body, field):
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.DEBUG = False

    error = assert_error(api.patch(APP, body), 400, 4)

    assert field in error["exception_fields"]
    assert not WebhookEndpoint.objects.exists()


def test_teams_on_is_accepted_as_it_is(api):
    assert_ok(api.patch(APP, {"multi_tenant_enabled": True}))
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("method", ["get", "patch"])
def test_only_the_server_reads_or_changes_the_app(api, host, method):
    response = getattr(api, method)(
        APP, **({"body": {}} if method == "patch" else {}), as_user=host
    )
    assert_error(response, 403, 17)


@pytest.mark.django_db(transaction=True)
def test_the_apps_webhook_receives_the_events_it_asked_for(api, hook_settings, receiver):
    assert_ok(api.patch(APP, {"webhook_url": receiver.url, "webhook_events": ["call.created"]}))

    create_call()

    assert [event["type"] for event in receiver.processed] == ["call.created"]


def test_app_query_counts(api, django_assert_num_queries):
    # 1: the app's own webhook endpoint.
    with django_assert_num_queries(1):
        got = api.get(APP)

    assert assert_ok(got)["app"]["webhook_url"] == ""

    # 4: (1) savepoint, (2) the app's own webhook endpoint, locked, (3) INSERT it, (4) release.
    with django_assert_num_queries(4):
        patched = api.patch(APP, {"webhook_url": PUBLIC, "webhook_events": ["call.ended"]})

    assert_ok(patched)
    assert WebhookEndpoint.objects.get().url == PUBLIC
