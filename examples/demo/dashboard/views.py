from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_app.devices import READINGS_KEPT, last_readings
from django_app.models.devices import Device


def index(request: HttpRequest) -> HttpResponse:
    """The live dashboard page: the devices as stored now; its WebSocket does the rest."""
    devices = list(Device.objects.all())
    readings: dict[str, list[Any]] = {
        device.device_id: [entry["reading"] for entry in last_readings(device)]
        for device in devices
    }
    context = {"devices": devices, "readings": readings, "kept": READINGS_KEPT}
    return render(request, "dashboard/index.html", context)
