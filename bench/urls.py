"""The project's routes plus the benchmark baseline (used only by bench/api.py)."""

from django.urls import include, path

from .baseline import MinimalView

urlpatterns = [
    path("bench/minimal/<str:id>", MinimalView.as_view()),
    path("", include("config.urls")),
]
