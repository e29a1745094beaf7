"""The benchmark's yardstick: a minimal DRF endpoint that reads one row and returns it as JSON."""

from __future__ import annotations

from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.models import Call


class MinimalView(APIView):
    authentication_classes = []
    permission_classes = []
    renderer_classes = [JSONRenderer]

    def get(self, request: Request, id: str) -> Response:
        row = Call.objects.filter(call_id=id).values("id", "cid").first()
        if row is None:
            return Response({"detail": "not found"}, status=404)
        return Response(row)
