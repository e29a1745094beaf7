"""The patient REST API (v1): thin views over `appointments.selectors` / `services` and the
calls services. Every object is looked up through a selector filtered by the signed-in patient,
so another patient's appointment or device is a 404, never a 403.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from appointments import selectors
from appointments.joining import join_info
from appointments.languages import activate_for
from appointments.links import session_grant
from appointments.messaging import ics
from appointments.models import Appointment, Patient
from appointments.services.patient_sessions import patient_session_end
from appointments.services.patients import patient_update
from appointments.services.sign_in_codes import patient_sign_in_code_redeem
from appointments.services.status import appointment_check_in, appointment_request_cancel
from appointments.tasks import patient_send_sign_in_code
from audit.record import ANONYMOUS, Action, Actor, client_ip, record
from calls.limits import JSONParser  # JSON under calls.limits (docs/limits.md)
from calls.services.devices import device_register, device_remove

from . import auth
from .errors import ErrorSerializer, exception_handler
from .serializers import (
    AcceptedSerializer,
    AppointmentDetailSerializer,
    AppointmentListQuerySerializer,
    AppointmentSerializer,
    CodeRequestSerializer,
    DeviceCreateSerializer,
    DeviceSerializer,
    JoinInfoSerializer,
    MeSerializer,
    PreferencesSerializer,
    PreferencesUpdateSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)

logger = logging.getLogger("appointments.api")


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


E400 = _error(
    "`invalid`: the input is wrong (a value, an unknown field or an unknown query parameter); "
    "`fields` says where."
)
E401 = _error("`not_authenticated`: no, an invalid, an expired or a revoked access token.")
E404 = _error("`not_found`: no such object among yours (another patient's looks the same).")
E409 = _error("`conflict`: the appointment is no longer open (cancelled or finished).")
E429 = _error(
    "`throttled`: too many attempts (for this address, from this IP, or sign-in is paused for "
    "everyone); see `Retry-After`."
)

APPOINTMENT_ID = OpenApiParameter(
    "appointment_id", str, OpenApiParameter.PATH, description="The appointment id."
)
ERROR_EXAMPLE = OpenApiExample(
    "Error shape",
    value={
        "error": {
            "code": "invalid",
            "message": "The request is invalid; see fields.",
            "fields": {"email": ["Enter a valid email address."]},
        }
    },
    response_only=True,
    status_codes=["400"],
)


def _record_patient(
    request: Request, patient: Patient, action: str, *, on: tuple[str, str] | None = None
) -> None:
    """An audit entry of something the patient did: to `on` (object type, id), else to their
    own record."""
    object_type, object_id = on or ("patient", patient.pk)
    record(
        action=action,
        actor=Actor.patient(patient.pk),
        clinic=patient.clinic.slug,
        object_type=object_type,
        object_id=object_id,
        ip=client_ip(request),
    )


class PatientAPIView(APIView):
    """Bearer access token, JSON in and out, and the patient API's error shape."""

    authentication_classes: ClassVar[list] = [auth.PatientTokenAuthentication]
    permission_classes: ClassVar[list] = [auth.IsPatient]
    renderer_classes: ClassVar[list] = [JSONRenderer]
    parser_classes: ClassVar[list] = [JSONParser]
    throttle_classes: ClassVar[list] = []
    # The query parameters the endpoint takes; any other is a 400 (as its schema says).
    query_parameters: ClassVar[frozenset[str]] = frozenset()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication first: 401 before 400
        if isinstance(request.user, Patient):
            # Messages in the patient's language; before sign-in, the Accept-Language one.
            activate_for(request._request, request.user.preferred_language)
        unknown = sorted(set(request.query_params) - self.query_parameters)
        if unknown:
            raise ValidationError({name: [_("Unknown query parameter.")] for name in unknown})

    @property
    def patient(self) -> Patient:
        return self.request.user  # type: ignore[return-value]  # set by the authentication

    def _appointment(self, appointment_id: str) -> Appointment:
        return selectors.appointment_for_patient(
            patient=self.patient, appointment_id=appointment_id
        )

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any):
        """A patient's successful read of their data goes to the audit trail."""
        if request.method == "GET" and response.status_code == 200 and self.authentication_classes:
            if "appointment_id" in kwargs:
                _record_patient(
                    request,
                    self.patient,
                    Action.APPOINTMENT_VIEWED,
                    on=("appointment", kwargs["appointment_id"]),
                )
            else:
                _record_patient(request, self.patient, Action.PATIENT_VIEWED)
        return super().finalize_response(request, response, *args, **kwargs)


class PublicPatientAPIView(PatientAPIView):
    authentication_classes: ClassVar[list] = []
    permission_classes: ClassVar[list] = []


# --- sign-in ---------------------------------------------------------------------------------


class SignInCodeView(PublicPatientAPIView):
    @extend_schema(
        tags=["sign-in"],
        operation_id="auth_code_request",
        summary="Email me a sign-in code",
        description=(
            "Sends a 6-digit code to every patient registered with this address (in `clinic` "
            "only, when given). A code is valid 10 minutes and works once; a new request "
            "replaces the previous code. Always 202, registered or not. At most 5 requests "
            "per address per 10 minutes (all spellings of an address count as one), and "
            "fewer per client IP and in all than a deployment's limits: then 429."
        ),
        request=CodeRequestSerializer,
        responses={202: AcceptedSerializer, 400: E400, 429: E429},
        examples=[ERROR_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        data = CodeRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"]
        auth.limit_code_request(request, email)
        for patient in auth.patients_by_email(email, data.validated_data.get("clinic")):
            # Nothing was written, so no commit to wait for; the task issues and emails the code.
            try:
                patient_send_sign_in_code.delay(patient.pk)
            except Exception as exc:
                # The answer stays 202 whatever happens (no account enumeration), even with
                # the broker down.
                logger.error(
                    "sign-in code task not queued for patient %s: %s",
                    patient.pk,
                    type(exc).__name__,
                )
        return Response(
            {"detail": _("If this address is registered, a code has been sent.")},
            status=status.HTTP_202_ACCEPTED,
        )


class TokenView(PublicPatientAPIView):
    @extend_schema(
        tags=["sign-in"],
        operation_id="auth_token_create",
        summary="Exchange a code for an access token",
        description=(
            "Checks the code against every patient with this address (in `clinic` only, "
            "when given). A wrong code, an expired code and an unknown address all answer 400 "
            "with `fields.code`, and so do a code already exchanged and one replaced by a "
            "newer request. After 5 wrong guesses the code is void: ask for a new one. After "
            "5 failures for an address within 10 minutes, every attempt answers 429 until the "
            "window ends; attempts are limited per client IP too, and all sign-ins pause when "
            "too many fail in all. The token is sent as `Authorization: Bearer "
            "<access_token>` and lives `expires_in` seconds, or until `POST auth/sign-out`; "
            "there is no refresh token: sign in again."
        ),
        request=TokenRequestSerializer,
        responses={200: TokenSerializer, 400: E400, 429: E429},
        examples=[ERROR_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        data = TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        email, code = data.validated_data["email"], data.validated_data["code"]
        auth.limit_code_attempt(request, email)
        candidates = auth.patients_by_email(email, data.validated_data.get("clinic"))
        # Every candidate's code is tried, and a match is used up: a code that happens to
        # match two patients' codes signs in neither.
        matches = [p for p in candidates if patient_sign_in_code_redeem(patient=p, code=code)]
        if not matches:
            auth.code_attempt_failed()
            logger.info("sign-in code rejected")
            record(
                action=Action.SIGN_IN_FAILED,
                actor=ANONYMOUS,
                object_type="patient",
                ip=client_ip(request),
            )
            raise ValidationError({"code": [_("The code is wrong or has expired.")]})
        if len(matches) > 1:  # two clinics' codes coincide (one chance in a million)
            raise ValidationError(
                {"clinic": [_("This address is registered with several clinics.")]}
            )
        patient = matches[0]
        auth.code_attempt_succeeded(email)
        logger.info("patient %s signed in", patient.pk)
        _record_patient(request, patient, Action.SIGNED_IN)
        return Response(
            {
                "access_token": auth.access_token_for(patient),
                "token_type": "Bearer",
                "expires_in": auth.token_ttl_seconds(),
            }
        )


class SignOutView(PatientAPIView):
    @extend_schema(
        tags=["sign-in"],
        operation_id="auth_sign_out",
        summary="Sign out",
        description=(
            "Ends the session of the access token sent: that token, and the calls-API tokens "
            "`join-info` gave under it, stop working at once. The patient's other devices "
            "stay signed in. A token that is already signed out is 401."
        ),
        request=None,
        responses={204: None, 400: E400, 401: E401},
    )
    def post(self, request: Request) -> Response:
        patient_session_end(session=request.auth)
        logger.info("patient %s signed out", self.patient.pk)
        _record_patient(request, self.patient, Action.SIGNED_OUT)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- profile ---------------------------------------------------------------------------------


class MeView(PatientAPIView):
    @extend_schema(
        tags=["profile"],
        operation_id="me_retrieve",
        summary="My profile",
        description="The signed-in patient and their clinic.",
        responses={200: MeSerializer, 400: E400, 401: E401},
    )
    def get(self, request: Request) -> Response:
        # The patient and their clinic come with the authentication (one query).
        return Response(MeSerializer(self.patient).data)


class PreferencesView(PatientAPIView):
    @extend_schema(
        tags=["profile"],
        operation_id="me_preferences_retrieve",
        summary="How the clinic may reach me",
        description="The channels the signed-in patient gets the clinic's messages on.",
        responses={200: PreferencesSerializer, 400: E400, 401: E401},
    )
    def get(self, request: Request) -> Response:
        return Response(PreferencesSerializer(self.patient).data)

    @extend_schema(
        tags=["profile"],
        operation_id="me_preferences_update",
        summary="Choose how the clinic may reach me",
        description=(
            "Turn email, SMS or app notifications on or off; the fields left out stay as they "
            "are. Turning `sms` on again clears a STOP."
        ),
        request=PreferencesUpdateSerializer,
        responses={200: PreferencesSerializer, 400: E400, 401: E401},
        examples=[ERROR_EXAMPLE],
    )
    def patch(self, request: Request) -> Response:
        data = PreferencesUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = {f"notify_{name}": value for name, value in data.validated_data.items()}
        patient = patient_update(patient=self.patient, **fields) if fields else self.patient
        return Response(PreferencesSerializer(patient).data)


# --- appointments ----------------------------------------------------------------------------


class AppointmentPagination(LimitOffsetPagination):
    """`limit` (1 to 100, default 20) and `offset` (0 to MAX_OFFSET): anything else is a 400,
    as the schema says (DRF's own pagination would quietly use its defaults)."""

    default_limit = 20
    max_limit = 100
    MAX_OFFSET = 1_000_000

    def _param(self, request: Request, name: str, default: int, least: int, most: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not re.fullmatch(r"[0-9]{1,7}", raw) or not least <= int(raw) <= most:
            message = _("Enter a whole number from %(least)s to %(most)s.")
            raise ValidationError({name: [message % {"least": least, "most": most}]})
        return int(raw)

    def get_limit(self, request: Request) -> int:
        return self._param(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._param(request, self.offset_query_param, 0, 0, self.MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": 20},
            self.offset_query_param: {"minimum": 0, "maximum": self.MAX_OFFSET, "default": 0},
        }
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


class AppointmentListView(PatientAPIView, generics.GenericAPIView):
    serializer_class = AppointmentSerializer
    pagination_class = AppointmentPagination
    query_parameters = frozenset({"scope", "limit", "offset"})

    @extend_schema(
        tags=["appointments"],
        operation_id="appointments_list",
        summary="My appointments",
        description=(
            "Only the signed-in patient's appointments, without `reason` (see the detail). "
            "Paginated with `limit` (default 20, at most 100) and `offset`; follow `next`."
        ),
        parameters=[AppointmentListQuerySerializer],
        responses={200: AppointmentSerializer(many=True), 400: E400, 401: E401},
    )
    def get(self, request: Request) -> Response:
        # A plain dict: DRF would take an empty `scope=` from a QueryDict for its default.
        query = AppointmentListQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        appointments = selectors.patient_appointments(
            patient=self.patient,
            upcoming=query.validated_data["scope"] == "upcoming",
            now=timezone.now(),
        )
        page = self.paginate_queryset(appointments)
        return self.get_paginated_response(AppointmentSerializer(page, many=True).data)


class AppointmentDetailView(PatientAPIView):
    @extend_schema(
        tags=["appointments"],
        operation_id="appointments_retrieve",
        summary="One of my appointments",
        description=(
            "One of the signed-in patient's appointments, with its `reason`. Staff notes are "
            "never shown. Another patient's appointment is 404."
        ),
        parameters=[APPOINTMENT_ID],
        responses={200: AppointmentDetailSerializer, 400: E400, 401: E401, 404: E404},
    )
    def get(self, request: Request, appointment_id: str) -> Response:
        return Response(AppointmentDetailSerializer(self._appointment(appointment_id)).data)


class CalendarView(PatientAPIView):
    @extend_schema(
        tags=["appointments"],
        operation_id="appointments_calendar",
        summary="The appointment as a calendar event (.ics)",
        description=(
            "An iCalendar file (RFC 5545) to add the appointment to a calendar: the start and "
            "end in the patient's time zone, the join link, the clinic as organizer. Its UID "
            "stays the same for the appointment and its SEQUENCE grows with each change; a "
            "cancelled appointment comes as METHOD:CANCEL."
        ),
        parameters=[APPOINTMENT_ID],
        responses={
            (200, "text/calendar"): OpenApiResponse(
                OpenApiTypes.STR, description="The iCalendar file."
            ),
            400: E400,
            401: E401,
            404: E404,
        },
    )
    def get(self, request: Request, appointment_id: str) -> HttpResponse:
        appointment = self._appointment(appointment_id)
        body = ics.patient_calendar(appointment, base_url=request.build_absolute_uri("/"))
        response = HttpResponse(body, content_type=ics.CONTENT_TYPE)
        response["Content-Disposition"] = f'attachment; filename="{ics.filename(appointment)}"'
        return response


class JoinInfoView(PatientAPIView):
    @extend_schema(
        tags=["appointments"],
        operation_id="appointments_join_info",
        summary="How and when to join the video call",
        description=(
            "The call to join, a calls-API user token scoped to it, and the join state. Use "
            "`api_key` and `token` with the calls API (Stream Video compatible): join with the "
            "call type `call_type` and id `call_id`. There is a token only in the states "
            "`too_early`, `lobby` and `live`; fetch again after `token_expires_at` or when "
            "`lobby_opens_at` passes. `join_url` opens the visit in a browser instead (no "
            "sign-in: the link itself is the key; it expires some hours after the appointment)."
        ),
        parameters=[APPOINTMENT_ID],
        responses={200: JoinInfoSerializer, 400: E400, 401: E401, 404: E404},
    )
    def get(self, request: Request, appointment_id: str) -> Response:
        appointment = self._appointment(appointment_id)
        info = join_info(
            patient=self.patient,
            appointment=appointment,
            now=timezone.now(),
            grant=session_grant(request.auth),  # signing out revokes the token
        )
        info["join_url"] = request.build_absolute_uri(info["join_url"])
        return Response(JoinInfoSerializer(info).data)


class CheckInView(PatientAPIView):
    @extend_schema(
        tags=["appointments"],
        operation_id="appointments_check_in",
        summary="I am here",
        description=(
            "Tells the clinic the patient is ready (a scheduled appointment becomes `waiting`)."
            " Checking in twice changes nothing."
        ),
        parameters=[APPOINTMENT_ID],
        request=None,
        responses={
            200: AppointmentDetailSerializer,
            400: E400,
            401: E401,
            404: E404,
            409: E409,
        },
    )
    def post(self, request: Request, appointment_id: str) -> Response:
        appointment = self._appointment(appointment_id)
        appointment_check_in(appointment=appointment)
        return Response(AppointmentDetailSerializer(self._appointment(appointment_id)).data)


class CancelRequestView(PatientAPIView):
    @extend_schema(
        tags=["appointments"],
        operation_id="appointments_cancel_request",
        summary="Ask the clinic to cancel",
        description=(
            "Records the request (`cancel_requested_at`); the clinic decides and cancels. "
            "Asking twice changes nothing."
        ),
        parameters=[APPOINTMENT_ID],
        request=None,
        responses={
            200: AppointmentDetailSerializer,
            400: E400,
            401: E401,
            404: E404,
            409: E409,
        },
    )
    def post(self, request: Request, appointment_id: str) -> Response:
        appointment = self._appointment(appointment_id)
        appointment_request_cancel(appointment=appointment)
        return Response(AppointmentDetailSerializer(self._appointment(appointment_id)).data)


# --- push devices ----------------------------------------------------------------------------


class DeviceListView(PatientAPIView):
    @extend_schema(
        tags=["devices"],
        operation_id="devices_create",
        summary="Register a push device",
        description=(
            "A Web Push subscription (`token` = its endpoint, a public https URL: others are "
            "400 on `token`; `keys` required), an APNs "
            "token (`apns`, or `apns_voip` for PushKit) or an FCM token. Registering a token "
            "again re-activates it and returns the same id; a token registered by someone else "
            "moves to the signed-in patient (the phone changed hands). While the patient has app "
            "notifications off (`me/preferences`, `push`), the device is kept but sent nothing "
            "until they turn them on again."
        ),
        request=DeviceCreateSerializer,
        responses={201: DeviceSerializer, 400: E400, 401: E401},
        examples=[ERROR_EXAMPLE],
    )
    def post(self, request: Request) -> Response:
        data = DeviceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        device = device_register(
            user_id=self.patient.call_user_id,
            kind=data.validated_data["kind"],
            token=data.validated_data["token"],
            keys=data.validated_data.get("keys"),
            # App notifications off (preferences): kept, sent nothing until turned on again.
            active=self.patient.notify_push,
        )
        return Response(DeviceSerializer(device).data, status=status.HTTP_201_CREATED)


class DeviceDetailView(PatientAPIView):
    @extend_schema(
        tags=["devices"],
        operation_id="devices_destroy",
        summary="Remove a push device",
        description="Stops pushes to the device. Another patient's device is 404.",
        parameters=[
            OpenApiParameter("device_id", int, OpenApiParameter.PATH, description="Device id.")
        ],
        responses={204: None, 400: E400, 401: E401, 404: E404},
    )
    def delete(self, request: Request, device_id: int) -> Response:
        device_remove(user_id=self.patient.call_user_id, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
