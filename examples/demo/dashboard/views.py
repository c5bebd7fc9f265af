from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    """The live dashboard page; its WebSocket does the rest."""
    return render(request, "dashboard/index.html")
