from django.contrib import admin
from django.urls import include, path

from appointments.join.views import javascript_catalog

urlpatterns = [
    path("admin/", admin.site.urls),
    # The patient API comes before the calls API, whose catch-all answers unknown /api/ paths.
    path("api/patient/", include("appointments.api.urls")),
    path("fhir/", include("fhir_api.urls")),
    # The SMS provider's callbacks (appointments.hooks: signed, no session, no CSRF token).
    path("", include("appointments.hooks")),
    path("", include("calls.api.urls")),
    path("", include("appointments.join.urls")),
    path("", include("appointments.portal.urls")),
    # The join pages' scripts translate their texts with Django's catalog (gettext in JS), in
    # the page's language (`?lang=`).
    path("jsi18n/", javascript_catalog, name="javascript-catalog"),
]
