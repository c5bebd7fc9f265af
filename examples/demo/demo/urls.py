from __future__ import annotations

from dashboard.views import index
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("", index, name="dashboard"),
    path("admin/", admin.site.urls),
]
