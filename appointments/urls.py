"""Staff portal routes. Everything under `/c/<slug>/` belongs to one of the staff member's
clinics (another clinic's slug, appointment or patient is a 404)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import join_views, views

app_name = "portal"

clinic_patterns = [
    path("today/", views.today, name="today"),
    path("today/rows/", views.today_rows, name="today_rows"),
    path("appointments/new/", views.appointment_new, name="appointment_new"),
    path("appointments/<str:appointment_id>/", views.appointment_detail, name="appointment"),
    path(
        "appointments/<str:appointment_id>/edit/",
        views.appointment_edit,
        name="appointment_edit",
    ),
    path(
        "appointments/<str:appointment_id>/cancel/",
        views.appointment_cancel,
        name="appointment_cancel",
    ),
    path(
        "appointments/<str:appointment_id>/join/",
        join_views.appointment_join,
        name="appointment_join",
    ),
    path(
        "appointments/<str:appointment_id>/guests/",
        views.appointment_guest_invite,
        name="appointment_guest_invite",
    ),
    path(
        "appointments/<str:appointment_id>/guests/<int:member_id>/remove/",
        views.appointment_guest_remove,
        name="appointment_guest_remove",
    ),
    path(
        "appointments/<str:appointment_id>/link/send/",
        views.appointment_link_send,
        name="appointment_link_send",
    ),
    path(
        "appointments/<str:appointment_id>/link/replace/",
        views.appointment_link_replace,
        name="appointment_link_replace",
    ),
    path(
        "appointments/<str:appointment_id>/call/<str:action>/",
        views.appointment_call_action,
        name="appointment_call",
    ),
    path("patients/", views.patients, name="patients"),
    path("patients/new/", views.patient_new, name="patient_new"),
    path("patients/search.json", views.patient_search, name="patient_search"),
    path("patients/<int:patient_id>/edit/", views.patient_edit, name="patient_edit"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("c/<slug:slug>/", include(clinic_patterns)),
]
