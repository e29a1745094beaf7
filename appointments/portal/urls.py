"""Staff portal routes. Everything under `/c/<slug>/` belongs to one of the staff member's
clinics (another clinic's slug, appointment or patient is a 404)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from appointments.join import views as join_views

from . import account, appointments, audit, patients, schedule, waiting

app_name = "portal"

clinic_patterns = [
    path("today/", schedule.today, name="today"),
    path("today/rows/", schedule.today_rows, name="today_rows"),
    path("waiting/", waiting.waiting_now, name="waiting"),
    path("waiting/rows/", waiting.waiting_rows, name="waiting_rows"),
    path(
        "appointments/<str:appointment_id>/admit/",
        waiting.appointment_admit,
        name="appointment_admit",
    ),
    path(
        "appointments/<str:appointment_id>/lobby-message/",
        waiting.appointment_lobby_message,
        name="appointment_lobby_message",
    ),
    path("appointments/new/", appointments.appointment_new, name="appointment_new"),
    path("appointments/<str:appointment_id>/", appointments.appointment_detail, name="appointment"),
    path(
        "appointments/<str:appointment_id>/edit/",
        appointments.appointment_edit,
        name="appointment_edit",
    ),
    path(
        "appointments/<str:appointment_id>/cancel/",
        appointments.appointment_cancel,
        name="appointment_cancel",
    ),
    path(
        "appointments/<str:appointment_id>/join/",
        join_views.appointment_join,
        name="appointment_join",
    ),
    path(
        "appointments/<str:appointment_id>/guests/",
        appointments.appointment_guest_invite,
        name="appointment_guest_invite",
    ),
    path(
        "appointments/<str:appointment_id>/guests/<int:member_id>/remove/",
        appointments.appointment_guest_remove,
        name="appointment_guest_remove",
    ),
    path(
        "appointments/<str:appointment_id>/link/send/",
        appointments.appointment_link_send,
        name="appointment_link_send",
    ),
    path(
        "appointments/<str:appointment_id>/link/replace/",
        appointments.appointment_link_replace,
        name="appointment_link_replace",
    ),
    path(
        "appointments/<str:appointment_id>/call/<str:action>/",
        appointments.appointment_call_action,
        name="appointment_call",
    ),
    path("patients/", patients.patients, name="patients"),
    path("patients/new/", patients.patient_new, name="patient_new"),
    path("patients/search.json", patients.patient_search, name="patient_search"),
    path("patients/<int:patient_id>/edit/", patients.patient_edit, name="patient_edit"),
    path("patients/<int:patient_id>/export/", patients.patient_data_export, name="patient_export"),
    path("patients/<int:patient_id>/erase/", patients.patient_data_erase, name="patient_erase"),
    path("audit/", audit.audit_log, name="audit"),
    path("audit/export.csv", audit.audit_export, name="audit_export"),
]

urlpatterns = [
    path("", schedule.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Staff accounts (account.py): the two-factor step, the password reset by email.
    path("account/2fa/", account.two_factor, name="two_factor"),
    path("account/password-reset/", account.password_reset, name="password_reset"),
    path("account/password-reset/sent/", account.password_reset_done, name="password_reset_done"),
    path(
        "account/reset/<uidb64>/<token>/",
        account.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("account/reset/done/", account.password_reset_complete, name="password_reset_complete"),
    path("c/<slug:slug>/", include(clinic_patterns)),
]
