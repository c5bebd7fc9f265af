from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_app.models.sms import SmsMessage, SmsOptOut

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.sms.admin_urls")]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def test_messages_and_opt_outs_are_listed_and_searchable(admin_client: Client) -> None:
    SmsMessage.objects.create(
        direction="inbound", sid="SM1", from_number="+447700900123", to_number="+1500",
        body="x" * 100, status="received",
    )  # fmt: skip
    SmsMessage.objects.create(
        direction="outbound", sid="SM2", from_number="+1500", to_number="+12125550123",
        body="status ok", status="delivered",
    )  # fmt: skip
    SmsOptOut.objects.create(number="+447700900123")
    found = admin_client.get("/admin/gateway/smsmessage/", {"q": "+4477"})
    assert found.status_code == 200
    assert b"+447700900123" in found.content
    assert b"x" * 59 + "…".encode() in found.content
    assert b"status ok" not in found.content
    filtered = admin_client.get("/admin/gateway/smsmessage/", {"status": "delivered"})
    assert b"status ok" in filtered.content
    opt_outs = admin_client.get("/admin/gateway/smsoptout/")
    assert b"+447700900123" in opt_outs.content
    detail = admin_client.get(
        f"/admin/gateway/smsmessage/{SmsMessage.objects.get(sid='SM2').pk}/change/"
    )
    assert detail.status_code == 200
    assert b"delivered" in detail.content
