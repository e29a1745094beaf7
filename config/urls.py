from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The patient API comes before the calls API, whose catch-all answers unknown /api/ paths.
    path("api/patient/", include("appointments.api.urls")),
    # The SMS provider's callbacks (appointments.hooks: signed, no session, no CSRF token).
    path("", include("appointments.hooks")),
    path("", include("calls.api.urls")),
    path("", include("appointments.join.urls")),
    path("", include("appointments.portal.urls")),
]
