"""The patients' and guests' join links (`appointments.links`): no sign-in, the link is the key.
The staff room (`views.appointment_join`) is a portal page: `appointments.portal.urls`."""

from django.urls import path

from . import notify, views

app_name = "join"

urlpatterns = [
    path("join/<str:appointment_id>/", views.patient_join, name="patient"),
    path("join/<str:appointment_id>/guest/", views.guest_join, name="guest"),
    # "Notify me on this device" (notify.py): the service worker and the subscriptions.
    path("join/sw.js", notify.service_worker, name="service_worker"),
    path("join/<str:appointment_id>/push/", notify.patient_push, name="patient_push"),
    path("join/<str:appointment_id>/guest/push/", notify.guest_push, name="guest_push"),
    path("join/<str:appointment_id>/calendar.ics", views.patient_calendar, name="calendar"),
]
