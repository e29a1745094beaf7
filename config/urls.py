from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The patient API comes before the calls API, whose catch-all answers unknown /api/ paths.
    path("api/patient/", include("appointments.api.urls")),
    path("fhir/", include("fhir_api.urls")),
    path("", include("calls.api.urls")),
    path("", include("appointments.join.urls")),
    path("", include("appointments.portal.urls")),
]
