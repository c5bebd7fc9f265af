"""The IMAP checkpoint admin: an operator sees where each mailbox got to and can reset it."""

from __future__ import annotations

import pytest
from django.test import Client

from django_app.models import ImapCheckpoint

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.email.admin_urls")]
URL = "/admin/gateway/imapcheckpoint/"


def test_checkpoints_are_listed_read_only_and_deleting_one_rescans(admin_client: Client) -> None:
    ImapCheckpoint.advance("inbox@example.com@127.0.0.1:1143", "INBOX", 1700, 42)
    listing = admin_client.get(URL, {"q": "inbox@example.com"}).content.decode()
    assert "inbox@example.com@127.0.0.1:1143" in listing
    assert ">42<" in listing
    assert admin_client.get(URL + "add/").status_code == 403
    row = ImapCheckpoint.objects.get()
    detail = admin_client.get(f"{URL}{row.pk}/change/").content.decode()
    assert 'name="last_uid"' not in detail  # shown, not editable
    response = admin_client.post(f"{URL}{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert ImapCheckpoint.resume_after("inbox@example.com@127.0.0.1:1143", "INBOX", 1700) == 0
