"""The patients' and guests' join links (`appointments.links`): no sign-in, the link is the key.
The staff room (`views.appointment_join`) is a portal page: `appointments.portal.urls`."""

from django.urls import path

from . import views

app_name = "join"

urlpatterns = [
    path("join/<str:appointment_id>/", views.patient_join, name="patient"),
    path("join/<str:appointment_id>/guest/", views.guest_join, name="guest"),
    path("join/<str:appointment_id>/calendar.ics", views.patient_calendar, name="calendar"),
]
