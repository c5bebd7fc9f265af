from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_app.models.devices import Device


def index(request: HttpRequest) -> HttpResponse:
    """The live dashboard page: the devices as stored now; its WebSocket does the rest."""
    return render(request, "dashboard/index.html", {"devices": Device.objects.all()})
