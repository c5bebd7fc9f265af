"""The inbound email admin: list, search, filter by status, read and download the raw bytes."""

from __future__ import annotations

import pytest
from django.test import Client

from django_app.models import InboundEmail

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.email.admin_urls")]

RAW = b"From: a@customer.test\r\nSubject: <b>Printer</b>\r\n\r\nbody \xff\r\n"


def row(**fields: object) -> InboundEmail:
    defaults: dict[str, object] = {
        "message_id": "m1@customer.test",
        "raw_sha256": "0" * 64,
        "raw": RAW,
        "size": len(RAW),
        "sender": "a@customer.test",
        "recipient": "support@example.com",
        "subject": "<b>Printer</b>",
        "source": "smtp",
    }
    return InboundEmail.objects.create(**{**defaults, **fields})


def test_list_search_and_status_filter(admin_client: Client) -> None:
    row(status="handled")
    row(status="failed", message_id="m2@x", subject="Fax machine")
    url = "/admin/gateway/inboundemail/"
    assert admin_client.get(url).status_code == 200
    failed = admin_client.get(url, {"status__exact": "failed"}).content.decode()
    assert "Fax machine" in failed
    assert "Printer" not in failed
    found = admin_client.get(url, {"q": "m2@x"}).content.decode()
    assert "Fax machine" in found


def test_change_page_shows_the_raw_message_escaped(admin_client: Client) -> None:
    email = row()
    page = admin_client.get(f"/admin/gateway/inboundemail/{email.pk}/change/").content.decode()
    assert "Subject: &lt;b&gt;Printer&lt;/b&gt;" in page
    assert "body \ufffd" in page
    assert f"/admin/gateway/inboundemail/{email.pk}/raw/" in page


def test_raw_download_is_byte_for_byte(admin_client: Client, client: Client) -> None:
    email = row()
    response = admin_client.get(f"/admin/gateway/inboundemail/{email.pk}/raw/")
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response.content == RAW
    # Anonymous users are sent to the login page, never given the message.
    assert client.get(f"/admin/gateway/inboundemail/{email.pk}/raw/").status_code == 302
