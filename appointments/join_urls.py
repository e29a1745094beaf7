"""The patients' and guests' join links (`appointments.links`): no sign-in, the link is the key."""

from django.urls import path

from . import join_views

app_name = "join"

urlpatterns = [
    path("join/<str:appointment_id>/", join_views.patient_join, name="patient"),
    path("join/<str:appointment_id>/guest/", join_views.guest_join, name="guest"),
]
