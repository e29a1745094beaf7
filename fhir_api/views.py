"""The FHIR R4 endpoints (`/fhir/r4/`) and the token endpoint (`/fhir/auth/token`): thin
views that check the token's scopes, parse and validate (`mapping`), call a service or a search
and render. Every answer is `application/fhir+json`; every error an OperationOutcome
(`outcome`), the token endpoint's excepted (RFC 6749's error JSON). Every read and write is in
the audit trail, with the client as the actor."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from appointments.models import Appointment, Patient, StaffMember
from audit.record import (
    Action,
    Actor,
    RequestContext,
    client_ip,
    context_reset,
    context_set,
    record_many,
)
from calls.errors import CallsError
from calls.limits import parse_json

from . import auth, capability, mapping, search, services, subscriptions
from .models import Identifier
from .outcome import FhirError, error_response, from_calls_error, response
from .scopes import Principal

logger = logging.getLogger("fhir_api")

View = Callable[..., HttpResponse]


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/fhir/r4")


def _token_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/fhir/auth/token")


def fhir_view(
    resource_type: str | None = None, methods: tuple[str, ...] = ("GET",)
) -> Callable[[View], View]:
    """Check the method, authenticate (when `resource_type` is set), set the audit actor, map
    errors to OperationOutcomes."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            token = None
            try:
                if request.method not in methods:
                    raise FhirError(
                        405,
                        f"{request.method} is not supported here.",
                        code="not-supported",
                        headers={"Allow": ", ".join(methods)},
                    )
                if any("\x00" in str(v) for v in kwargs.values()):
                    raise FhirError(404, "No such resource.", code="not-found")
                principal = None
                if resource_type is not None:
                    principal = auth.principal_of(request.headers.get("Authorization", ""))
                    actor = Actor.client(principal.client.client_id)
                    token = context_set(RequestContext(actor=actor, ip=client_ip(request)))
                return view(request, principal, *args, **kwargs)
            except FhirError as exc:
                return error_response(exc)
            except CallsError as exc:
                return error_response(from_calls_error(exc))
            except Exception:
                # Our bug: logged (the traceback, no request data), answered in FHIR's shape.
                logger.exception("FHIR %s %s failed", request.method, view.__name__)
                return error_response(FhirError(500, "Internal error.", code="exception"))
            finally:
                if token is not None:
                    context_reset(token)

        return wrapper

    return decorate


def _require(principal: Principal, resource_type: str, letter: str) -> None:
    if not principal.may(resource_type, letter):
        names = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
        raise FhirError(
            403,
            f"The access token's scopes do not allow {names[letter]} on {resource_type} "
            f"(system/{resource_type}.{letter}).",
            code="forbidden",
        )


def _body(request: HttpRequest) -> Any:
    kind = request.content_type or ""
    if kind not in ("application/fhir+json", "application/json"):
        raise FhirError(415, "Send application/fhir+json.", code="not-supported")
    limit = settings.FHIR_MAX_BODY_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > limit:
        raise FhirError(413, f"The body is larger than {limit} bytes.", code="too-costly")
    return parse_json(request.body, max_bytes=limit)


def _body_of(request: HttpRequest, resource_type: str, resource_id: str) -> Any:
    """An update's body (`_body`), whose `id` must be the URL's (FHIR's update rule)."""
    body = _body(request)
    if isinstance(body, dict) and body.get("id") != resource_id:
        raise FhirError(
            400, "The resource's id must be the URL's.", expression=[f"{resource_type}.id"]
        )
    return body


def _if_none_exist(request: HttpRequest) -> list[tuple[str, str]] | None:
    raw = request.headers.get("If-None-Exist")
    if raw is None:
        return None
    query = raw.split("?", 1)[-1]
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        raise FhirError(400, "If-None-Exist needs a search query.", expression=["If-None-Exist"])
    return pairs


def _if_match(request: HttpRequest) -> str | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    return raw.strip().removeprefix("W/").strip('"')


def _etag(version: str) -> dict[str, str]:
    return {"ETag": f'W/"{version}"'}


# --- Appointment -----------------------------------------------------------------------------


def _appointments(principal: Principal, ids: list[str]) -> list[Appointment]:
    return services.appointments_of(principal.clinic, ids)


def _site(request: HttpRequest) -> str:
    return request.build_absolute_uri("/").rstrip("/")


def _appointment_resources(request: HttpRequest, appointments: list[Appointment]) -> list[dict]:
    return services.appointment_resources(appointments, site=_site(request))


# A read's audit entry, by what was read (a read, a search's page, a conditional create's
# match, `$status`).
VIEWED = {
    "appointment": Action.APPOINTMENT_VIEWED,
    "patient": Action.PATIENT_VIEWED,
    "subscription": Action.SUBSCRIPTION_VIEWED,
}


def _viewed(principal: Principal, object_type: str, ids: list[Any]) -> None:
    record_many(
        action=VIEWED[object_type],
        clinic=principal.clinic.slug,
        object_type=object_type,
        object_ids=ids,
    )


def _one(request: HttpRequest, principal: Principal, appointment_id: str, status: int = 200):
    (appointment,) = _appointments(principal, [appointment_id])
    (resource,) = _appointment_resources(request, [appointment])
    headers = _etag(resource["meta"]["versionId"])
    if status == 201:
        version = resource["meta"]["versionId"]
        headers["Location"] = f"{_base(request)}/Appointment/{appointment.pk}/_history/{version}"
    return response(resource, status, headers)


@fhir_view("Appointment", ("GET", "POST"))
def appointment_type(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        _require(principal, "Appointment", "c")
        data = mapping.appointment_in(_body(request))
        condition = _if_none_exist(request)
        appointment, created = services.appointment_create(
            principal=principal, data=data, if_none_exist=condition
        )
        if not created:
            _viewed(principal, "appointment", [appointment.pk])
        return _one(request, principal, appointment.pk, 201 if created else 200)
    _require(principal, "Appointment", "s")
    found = search.appointments(principal.clinic, search.as_pairs(request.GET))
    return _bundle(request, principal, "Appointment", found)


@fhir_view("Appointment", ("GET", "PUT"))
def appointment_instance(
    request: HttpRequest, principal: Principal, appointment_id: str
) -> HttpResponse:
    if request.method == "PUT":
        _require(principal, "Appointment", "u")
        body = _body_of(request, "Appointment", appointment_id)
        data = mapping.appointment_in(body)
        appointment = services.appointment_change(
            principal=principal,
            appointment_id=appointment_id,
            data=data,
            if_match=_if_match(request),
        )
        return _one(request, principal, appointment.pk)
    _require(principal, "Appointment", "r")
    if not Appointment.objects.filter(clinic=principal.clinic, pk=appointment_id).exists():
        raise FhirError(404, "No such Appointment.", code="not-found")
    _viewed(principal, "appointment", [appointment_id])
    return _one(request, principal, appointment_id)


def _bundle(
    request: HttpRequest, principal: Principal, resource_type: str, found: search.Search
) -> HttpResponse:
    total = found.queryset.count()
    base = _base(request)
    self_params = [*found.params, ("_count", str(found.count))]
    links = []
    entries: list[dict[str, Any]] = []
    if found.summary_count:
        links.append(
            {
                "relation": "self",
                "url": f"{base}/{resource_type}?"
                + urlencode([*found.params, ("_summary", "count")]),
            }
        )
    else:
        links.append(
            {
                "relation": "self",
                "url": f"{base}/{resource_type}?"
                + urlencode([*self_params, ("_offset", str(found.offset))]),
            }
        )
        page = found.queryset.order_by(*_ORDER[resource_type])[
            found.offset : found.offset + found.count
        ]
        if resource_type == "Appointment":
            ids = list(page.values_list("pk", flat=True))
            resources = _appointment_resources(request, _appointments(principal, ids))
            audit_type = "appointment"
        elif resource_type == "Patient":
            patients = list(page)
            ids = [p.pk for p in patients]
            idents = _patient_identifiers(ids)
            resources = [mapping.patient_out(p, idents.get(str(p.pk), [])) for p in patients]
            audit_type = "patient"
        elif resource_type == "Schedule":
            resources = [mapping.schedule_out(s) for s in page]
            ids, audit_type = [], ""
        elif resource_type == "Subscription":
            subs = list(page)
            resources = [subscriptions.subscription_out(s) for s in subs]
            ids, audit_type = [s.pk for s in subs], "subscription"
        else:
            staff = list(page)
            idents = _identifiers_of("Practitioner", [s.pk for s in staff])
            resources = [mapping.practitioner_out(s, idents.get(str(s.pk), [])) for s in staff]
            ids, audit_type = [], ""
        if ids and audit_type:
            _viewed(principal, audit_type, ids)
        entries = [
            {
                "fullUrl": f"{base}/{resource_type}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ]
        if found.offset + found.count < total and found.count > 0:
            links.append(
                {
                    "relation": "next",
                    "url": f"{base}/{resource_type}?"
                    + urlencode([*self_params, ("_offset", str(found.offset + found.count))]),
                }
            )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return response(bundle)


_ORDER = {
    "Appointment": ("starts_at", "pk"),
    "Patient": ("pk",),
    "Practitioner": ("pk",),
    "Schedule": ("pk",),
    "Subscription": ("created_at", "pk"),
}


# --- Patient ---------------------------------------------------------------------------------


def _patient_identifiers(ids: list[int]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for row in Identifier.objects.filter(
        resource_type="Patient", resource_id__in=[str(i) for i in ids]
    ).order_by("pk"):
        out.setdefault(row.resource_id, []).append((row.system, row.value))
    return out


def _patient_response(patient: Patient, status: int = 200) -> HttpResponse:
    resource = mapping.patient_out(
        patient, _patient_identifiers([patient.pk]).get(str(patient.pk), [])
    )
    return response(resource, status, _etag(resource["meta"]["versionId"]))


@fhir_view("Patient", ("GET", "POST"))
def patient_type(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        _require(principal, "Patient", "c")
        data = mapping.patient_in(_body(request))
        patient, created = services.patient_add(
            principal=principal, data=data, if_none_exist=_if_none_exist(request)
        )
        if not created:
            _viewed(principal, "patient", [patient.pk])
        return _patient_response(patient, 201 if created else 200)
    _require(principal, "Patient", "s")
    found = search.patients(principal.clinic, search.as_pairs(request.GET))
    return _bundle(request, principal, "Patient", found)


@fhir_view("Patient", ("GET", "PUT"))
def patient_instance(request: HttpRequest, principal: Principal, patient_id: str) -> HttpResponse:
    if request.method == "PUT":
        return _patient_put(request, principal, patient_id)
    _require(principal, "Patient", "r")
    patient = (
        Patient.objects.filter(clinic=principal.clinic, pk=int(patient_id)).first()
        if search.is_id(patient_id)
        else None
    )
    if patient is None:
        raise FhirError(404, "No such Patient.", code="not-found")
    _viewed(principal, "patient", [patient.pk])
    return _patient_response(patient)


# --- Practitioner (staff: read only) ---------------------------------------------------------


@fhir_view("Practitioner", ("GET", "POST"))
def practitioner_type(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        return _practitioner_post(request, principal)
    _require(principal, "Practitioner", "s")
    found = search.practitioners(principal.clinic, search.as_pairs(request.GET))
    return _bundle(request, principal, "Practitioner", found)


@fhir_view("Practitioner")
def practitioner_instance(
    request: HttpRequest, principal: Principal, staff_id: str
) -> HttpResponse:
    _require(principal, "Practitioner", "r")
    staff = (
        StaffMember.objects.filter(memberships__clinic=principal.clinic, pk=int(staff_id))
        .select_related("user")
        .first()
        if search.is_id(staff_id)
        else None
    )
    if staff is None:
        raise FhirError(404, "No such Practitioner.", code="not-found")
    return _practitioner_response(staff)


# --- Schedule and Slot (free/busy, read only) ------------------------------------------------


@fhir_view("Schedule")
def schedule_type(request: HttpRequest, principal: Principal) -> HttpResponse:
    _require(principal, "Schedule", "s")
    found = search.schedules(principal.clinic, search.as_pairs(request.GET))
    return _bundle(request, principal, "Schedule", found)


@fhir_view("Schedule")
def schedule_instance(request: HttpRequest, principal: Principal, staff_id: str) -> HttpResponse:
    _require(principal, "Schedule", "r")
    found = search.schedules(principal.clinic, [("_id", staff_id)]).queryset.first()
    if found is None:
        raise FhirError(404, "No such Schedule.", code="not-found")
    return response(mapping.schedule_out(found))


@fhir_view("Slot")
def slot_type(request: HttpRequest, principal: Principal) -> HttpResponse:
    """Free and busy periods of one schedule in a window (no patient data: times only)."""
    _require(principal, "Slot", "s")
    query = search.slot_query(principal.clinic, search.as_pairs(request.GET))
    periods = search.free_busy(principal.clinic, query)
    base = _base(request)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(periods)}
    self_params = [*query.params, ("_count", str(query.count))]
    links = [{"relation": "self", "url": f"{base}/Slot?" + urlencode(self_params)}]
    if not query.summary_count:
        page = periods[query.offset : query.offset + query.count]
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/Slot/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in (mapping.slot_out(query.staff, *p) for p in page)
        ] or None
        if query.offset + query.count < len(periods) and query.count > 0:
            nxt = [*self_params, ("_offset", str(query.offset + query.count))]
            links.append({"relation": "next", "url": f"{base}/Slot?" + urlencode(nxt)})
    bundle["link"] = links
    return response({k: v for k, v in bundle.items() if v is not None})


# --- Patient update, Practitioner create, Appointment vread and history (fhir-rest) -----------


def _identifiers_of(resource_type: str, ids: list[int]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    rows = Identifier.objects.filter(
        resource_type=resource_type, resource_id__in=[str(i) for i in ids]
    ).order_by("pk")
    for row in rows:
        out.setdefault(row.resource_id, []).append((row.system, row.value))
    return out


def _patient_put(request: HttpRequest, principal: Principal, patient_id: str) -> HttpResponse:
    _require(principal, "Patient", "u")
    body = _body_of(request, "Patient", patient_id)
    patient = services.patient_change(
        principal=principal,
        patient_id=patient_id,
        data=mapping.patient_in(body),
        if_match=_if_match(request),
    )
    return _patient_response(patient)


def _practitioner_response(staff: StaffMember, status: int = 200) -> HttpResponse:
    idents = _identifiers_of("Practitioner", [staff.pk]).get(str(staff.pk), [])
    return response(mapping.practitioner_out(staff, idents), status)


def _practitioner_post(request: HttpRequest, principal: Principal) -> HttpResponse:
    _require(principal, "Practitioner", "c")
    data = mapping.practitioner_in(_body(request))
    staff, created = services.practitioner_create(
        principal=principal, data=data, if_none_exist=_if_none_exist(request)
    )
    answer = _practitioner_response(staff, 201 if created else 200)
    if created:
        answer["Location"] = f"{_base(request)}/Practitioner/{staff.pk}"
    return answer


# History is not kept: `meta.versionId` names the current version only (the row's last
# change). vread answers that version; an older one, or a history, is refused (404, as FHIR
# says for a server that does not keep them), and the CapabilityStatement says so.
NO_HISTORY = (
    "Earlier versions are not kept: only the current version can be read "
    "(CapabilityStatement: readHistory false, no history interaction). "
    "Poll _lastUpdated to learn of changes."
)


@fhir_view("Appointment")
def appointment_version(
    request: HttpRequest, principal: Principal, appointment_id: str, version_id: str
) -> HttpResponse:
    _require(principal, "Appointment", "r")
    appointment = Appointment.objects.filter(clinic=principal.clinic, pk=appointment_id).first()
    if appointment is None:
        raise FhirError(404, "No such Appointment.", code="not-found")
    if version_id != mapping.version_of(appointment.updated_at):
        raise FhirError(404, NO_HISTORY, code="not-supported")
    _viewed(principal, "appointment", [appointment_id])
    return _one(request, principal, appointment_id)


@fhir_view("Appointment")
def appointment_history(
    request: HttpRequest, principal: Principal, appointment_id: str = ""
) -> HttpResponse:
    _require(principal, "Appointment", "r")
    if appointment_id and not (
        Appointment.objects.filter(clinic=principal.clinic, pk=appointment_id).exists()
    ):
        raise FhirError(404, "No such Appointment.", code="not-found")
    raise FhirError(404, NO_HISTORY, code="not-supported")


# --- Subscriptions (R4B backport: subscriptions.py) ------------------------------------------


def _subscription_response(sub, status: int = 200) -> HttpResponse:
    resource = subscriptions.subscription_out(sub)
    return response(resource, status, _etag(resource["meta"]["versionId"]))


@fhir_view("Subscription", ("GET", "POST"))
def subscription_type(request: HttpRequest, principal: Principal) -> HttpResponse:
    if request.method == "POST":
        _require(principal, "Subscription", "c")
        data = subscriptions.subscription_in(_body(request), principal.clinic)
        sub = subscriptions.subscription_create(principal=principal, data=data)
        response_ = _subscription_response(sub, 201)
        response_["Location"] = f"{_base(request)}/Subscription/{sub.pk}"
        return response_
    _require(principal, "Subscription", "s")
    found = search.subscriptions(principal.clinic, search.as_pairs(request.GET))
    return _bundle(request, principal, "Subscription", found)


@fhir_view("Subscription", ("GET", "PUT", "DELETE"))
def subscription_instance(
    request: HttpRequest, principal: Principal, subscription_id: str
) -> HttpResponse:
    if request.method == "PUT":
        _require(principal, "Subscription", "u")
        body = _body_of(request, "Subscription", subscription_id)
        data = subscriptions.subscription_in(body, principal.clinic)
        sub = subscriptions.subscription_change(
            principal=principal,
            subscription_id=subscription_id,
            data=data,
            if_match=_if_match(request),
        )
        return _subscription_response(subscriptions.subscription_get(principal, sub.pk))
    if request.method == "DELETE":
        _require(principal, "Subscription", "d")
        subscriptions.subscription_delete(principal=principal, subscription_id=subscription_id)
        return HttpResponse(status=204)
    _require(principal, "Subscription", "r")
    sub = subscriptions.subscription_get(principal, subscription_id)
    _viewed(principal, "subscription", [sub.pk])
    return _subscription_response(sub)


@fhir_view("Subscription")
def subscription_status(
    request: HttpRequest, principal: Principal, subscription_id: str
) -> HttpResponse:
    """`$status`: where the subscription stands (its status, events since start, error)."""
    _require(principal, "Subscription", "r")
    sub = subscriptions.subscription_get(principal, subscription_id)
    _viewed(principal, "subscription", [sub.pk])
    return response(subscriptions.status_bundle(sub))


@fhir_view()
def topic_type(request: HttpRequest, principal: None) -> HttpResponse:
    """The topics (one), readable without a token like the CapabilityStatement."""
    pairs = search.as_pairs(request.GET)
    if any(name not in ("url", "_id") for name, _ in pairs):
        raise FhirError(400, "Search SubscriptionTopic by url or _id.", code="not-supported")
    topic = subscriptions.topic()
    match = all(
        (name != "url" or value == topic["url"]) and (name != "_id" or value == topic["id"])
        for name, value in pairs
    )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": int(match)}
    if match:
        bundle["entry"] = [
            {
                "fullUrl": topic["url"],
                "resource": topic,
                "search": {"mode": "match"},
            }
        ]
    return response(bundle)


@fhir_view()
def topic_instance(request: HttpRequest, principal: None, topic_id: str) -> HttpResponse:
    if topic_id != subscriptions.TOPIC_ID:
        raise FhirError(404, "No such SubscriptionTopic.", code="not-found")
    return response(subscriptions.topic())


# --- metadata, SMART, token, anything else ---------------------------------------------------


@fhir_view()
def metadata(request: HttpRequest, principal: None) -> HttpResponse:
    statement = capability.capability_statement(
        base_url=_base(request),
        token_url=_token_url(request),
        topic_url=subscriptions.topic_url(),
    )
    return response(mapping.checked_out(statement))


@require_http_methods(["GET"])
def smart_configuration(request: HttpRequest) -> HttpResponse:
    return JsonResponse(capability.smart_configuration(token_url=_token_url(request)))


@csrf_exempt
@require_http_methods(["POST"])
def token(request: HttpRequest) -> HttpResponse:
    try:
        auth.token_rate_limit_ip(client_ip(request) or "unknown")
        if request.content_type != "application/x-www-form-urlencoded":
            raise auth.OAuthError("invalid_request", "Send a form (urlencoded).")
        if len(request.body) > auth.MAX_ASSERTION_BYTES * 2:
            raise auth.OAuthError("invalid_request", "The request is too large.")
        answer = auth.token_issue(form=request.POST, token_url=_token_url(request))
    except auth.OAuthError as exc:
        body = {"error": exc.error, "error_description": exc.description}
        headers = {"Cache-Control": "no-store", **exc.headers}
        return JsonResponse(body, status=exc.status, headers=headers)
    return JsonResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@fhir_view(methods=("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"))
def not_found(request: HttpRequest, principal: None, rest: str = "") -> HttpResponse:
    raise FhirError(404, "No such FHIR endpoint here (see /fhir/r4/metadata).", code="not-found")
