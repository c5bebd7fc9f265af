"""The gateway app's models, one module per feature; each is imported here."""

from __future__ import annotations
