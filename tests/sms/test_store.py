"""The database store: SmsMessage and SmsOptOut rows written by a running gateway."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from django_app.models.sms import DatabaseSmsStore, SmsMessage, SmsOptOut
from gateway.consumers import AsyncSmsConsumer
from gateway.sms import SmsRecord
from routers import ProtocolTypeRouter
from tests.sms.support import STATUS, inbound, running_gateway, twilio_stub, twiml_messages

pytestmark = pytest.mark.django_db(transaction=True)


class Echo(AsyncSmsConsumer):
    handled: list[str] = []

    async def receive(self, body: str) -> None:
        Echo.handled.append(body)
        if body == "fail":
            raise RuntimeError("cannot handle this")
        await self.reply(body)
        if body == "forward":
            await self.send("+447700900999", "forwarded")


APP = ProtocolTypeRouter({"sms": Echo.as_asgi()})
DB = {"STORE": "django_app.models.sms.DatabaseSmsStore"}


async def test_inbound_messages_are_stored_and_deduplicated_across_restarts() -> None:
    Echo.handled = []
    form = inbound("whatsapp:+447700900123", body="hello 😀", NumMedia="1", MediaUrl0="https://m/0")
    async with running_gateway(APP, DB) as gw:
        assert twiml_messages((await gw.post(form)).text) == ["hello 😀"]
    async with running_gateway(APP, DB) as gw:
        # A new process knows nothing in memory: the database row stops the replay.
        assert twiml_messages((await gw.post(form)).text) == []
    assert Echo.handled == ["hello 😀"]
    stored = await SmsMessage.objects.aget(sid=form["MessageSid"])
    assert stored.direction == "inbound"
    assert stored.from_number == "whatsapp:+447700900123"
    assert stored.to_number == "whatsapp:+15005550006"
    assert stored.status == "received"
    assert stored.media == [{"url": "https://m/0", "content_type": ""}]


async def test_failed_messages_are_marked_failed() -> None:
    form = inbound("+447700900123", body="fail")
    async with running_gateway(APP, DB) as gw:
        response = await gw.post(form)
        assert twiml_messages(response.text) == []
    stored = await SmsMessage.objects.aget(sid=form["MessageSid"])
    assert stored.status == "failed"
    assert "cannot handle this" in stored.error


async def test_outbound_status_and_opt_out_rows() -> None:
    async with twilio_stub() as stub, running_gateway(APP, stub.options(**DB)) as gw:
        await gw.post(inbound("+12125550123", body="forward"))
        outbound = await SmsMessage.objects.aget(direction="outbound")
        assert (outbound.to_number, outbound.status) == ("+447700900999", "queued")
        for status in ("sent", "undelivered", "queued"):
            form = {"MessageSid": outbound.sid, "MessageStatus": status, "ErrorCode": "30003"}
            assert (await gw.post(form, path=STATUS)).status_code == 204
        await gw.post(inbound("+447700900999", body="STOP"))
        assert await SmsOptOut.objects.filter(number="+447700900999").aexists()
        await gw.post(inbound("+12125550123", body="forward"))
    await outbound.arefresh_from_db()
    assert outbound.status == "undelivered"
    assert outbound.error == "Twilio error 30003"
    assert len(stub.requests) == 1, "nothing is sent to a number that opted out"


async def test_store_methods() -> None:
    store = DatabaseSmsStore()
    record = SmsRecord("outbound", "SM1", "+1500", "+44770", "x", "queued")
    assert await store.record(record) is True
    assert await store.record(record) is False
    assert await store.update_status("SM1", "delivered") is True
    assert await store.update_status("SM1", "sent") is False
    assert await store.update_status("SM-unknown", "sent") is False
    await store.set_opted_out("+44 7700 900123", True)
    assert await store.is_opted_out("whatsapp:+447700900123") is True
    await store.set_opted_out("+447700900123", False)
    assert await store.is_opted_out("+447700900123") is False
    count = await sync_to_async(SmsMessage.objects.count)()
    assert count == 1
