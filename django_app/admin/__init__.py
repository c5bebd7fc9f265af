"""The gateway app's admin, one module per feature; each is imported here."""

from __future__ import annotations
