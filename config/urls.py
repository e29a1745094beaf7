from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

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
    # The join pages' scripts translate their texts with Django's catalog (gettext in JS).
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
]
