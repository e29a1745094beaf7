"""FHIR routes, mounted at `fhir/` (config/urls.py): `r4/` the API, `auth/token` the SMART
token endpoint. Any other path under `fhir/` is a 404 OperationOutcome."""

from __future__ import annotations

from django.urls import path, re_path

from . import views

app_name = "fhir_api"

urlpatterns = [
    path("auth/token", views.token, name="token"),
    path(
        "r4/.well-known/smart-configuration",
        views.smart_configuration,
        name="smart-configuration",
    ),
    path("r4/metadata", views.metadata, name="metadata"),
    # vread (the current version) and history (not kept: refused), before the instance route.
    path("r4/Appointment/_history", views.appointment_history, name="appointments-history"),
    path(
        "r4/Appointment/<str:appointment_id>/_history",
        views.appointment_history,
        name="appointment-history",
    ),
    path(
        "r4/Appointment/<str:appointment_id>/_history/<str:version_id>",
        views.appointment_version,
        name="appointment-version",
    ),
    path("r4/Appointment", views.appointment_type, name="appointments"),
    path("r4/Appointment/<str:appointment_id>", views.appointment_instance, name="appointment"),
    path("r4/Patient", views.patient_type, name="patients"),
    path("r4/Patient/<str:patient_id>", views.patient_instance, name="patient"),
    path("r4/Practitioner", views.practitioner_type, name="practitioners"),
    path("r4/Practitioner/<str:staff_id>", views.practitioner_instance, name="practitioner"),
    path("r4/Schedule", views.schedule_type, name="schedules"),
    path("r4/Schedule/<str:staff_id>", views.schedule_instance, name="schedule"),
    path("r4/Slot", views.slot_type, name="slots"),
    path("r4/Subscription", views.subscription_type, name="subscriptions"),
    path(
        "r4/Subscription/<str:subscription_id>/$status",
        views.subscription_status,
        name="subscription-status",
    ),
    path(
        "r4/Subscription/<str:subscription_id>",
        views.subscription_instance,
        name="subscription",
    ),
    path("r4/SubscriptionTopic", views.topic_type, name="topics"),
    path("r4/SubscriptionTopic/<str:topic_id>", views.topic_instance, name="topic"),
    re_path(r"^(?P<rest>[\s\S]*)\Z", views.not_found),
]
