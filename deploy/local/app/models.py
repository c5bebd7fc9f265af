"""One row per handling, not per message: a message handled twice shows up twice."""

from __future__ import annotations

from django.db import models


class Handling(models.Model):
    """A consumer handled one event: a reading (MQTT) or a mail job (a worker)."""

    kind = models.CharField(max_length=16)
    key = models.CharField(max_length=100, db_index=True)
    process = models.CharField(max_length=100)
    at = models.DateTimeField(auto_now_add=True)
