from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from .consumers import PROCESS


def ping(request: HttpRequest) -> JsonResponse:
    """Which process answered, and what it saw of the request (scheme, client)."""
    return JsonResponse(
        {"process": PROCESS, "secure": request.is_secure(), "client": request.META["REMOTE_ADDR"]}
    )
