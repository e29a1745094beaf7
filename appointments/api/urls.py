"""Patient API routes, mounted at `api/patient/` (config/urls.py). Like the calls API: no
trailing slashes and never a redirect; any other path under `api/patient/` is a 404 in the
patient API's error shape.

OpenAPI 3 schema: `/api/patient/v1/schema` (YAML; `?format=json` for JSON).
Swagger UI: `/api/patient/v1/docs`.
"""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views
from .errors import not_found_view
from .schema import SCHEMA_SETTINGS

app_name = "patient_api"

APPOINTMENT = "appointments/<str:appointment_id>"

v1 = [
    path("auth/code", views.SignInCodeView.as_view(), name="auth-code"),
    path("auth/token", views.TokenView.as_view(), name="auth-token"),
    path("auth/sign-out", views.SignOutView.as_view(), name="auth-sign-out"),
    path("me", views.MeView.as_view(), name="me"),
    path("me/preferences", views.PreferencesView.as_view(), name="preferences"),
    path("appointments", views.AppointmentListView.as_view(), name="appointments"),
    path(APPOINTMENT, views.AppointmentDetailView.as_view(), name="appointment"),
    path(f"{APPOINTMENT}/join-info", views.JoinInfoView.as_view(), name="join-info"),
    path(f"{APPOINTMENT}/calendar.ics", views.CalendarView.as_view(), name="calendar"),
    path(f"{APPOINTMENT}/check-in", views.CheckInView.as_view(), name="check-in"),
    path(f"{APPOINTMENT}/cancel-request", views.CancelRequestView.as_view(), name="cancel-request"),
    path("devices", views.DeviceListView.as_view(), name="devices"),
    path("devices/<int:device_id>", views.DeviceDetailView.as_view(), name="device"),
    path("schema", SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="patient_api:schema"), name="docs"),
]

urlpatterns = [
    path("v1/", include(v1)),
    re_path(r"^[\s\S]*\Z", not_found_view),  # any path, with newlines too
]
