from django.contrib import admin
from django.urls import include, path

from appointments.join.views import PageCatalog

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
    # the page's language (in the URL: a page's language may not be the browser's).
    path("jsi18n/<str:lang>/", PageCatalog.as_view(), name="javascript-catalog"),
]
