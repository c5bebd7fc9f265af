"""Each SMS provider's adapter entry in GATEWAY["ADAPTERS"], through the system checks."""

from __future__ import annotations

import pytest

from gateway.conf import GatewaySettings
from gateway.conf_checks import validate
from gateway.deploy import deploy_risks

PROVIDERS = {  # backend, the secret without which every webhook is refused, other options
    "vonage": ("protocol_adapters.vonage_sms.VonageSmsAdapter", "SIGNATURE_SECRET", "API_KEY"),
    "plivo": ("protocol_adapters.plivo_sms.PlivoSmsAdapter", "AUTH_TOKEN", "AUTH_ID"),
    "telnyx": ("protocol_adapters.telnyx_sms.TelnyxSmsAdapter", "PUBLIC_KEY", "API_KEY"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_options_are_errors_naming_the_entry(provider: str) -> None:
    backend, _, _ = PROVIDERS[provider]
    options = {"WEBHOOK_PATH": "sms", "DEADLINE": "soon", "SEND_RETRY": {"ATTEMPTS": 0}}
    problems = validate({"ADAPTERS": {provider: {"BACKEND": backend, "OPTIONS": options}}})
    assert {problem.id for problem in problems} == {"gateway.E005"}
    text = "\n".join(problem.message for problem in problems)
    assert f'GATEWAY["ADAPTERS"]["{provider}"]["OPTIONS"]' in text
    for key in ('["WEBHOOK_PATH"]', '["DEADLINE"]', '["SEND_RETRY"]["ATTEMPTS"]'):
        assert key in text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_secret_is_a_deploy_warning(provider: str) -> None:
    backend, secret, other = PROVIDERS[provider]
    gateway = {"ADAPTERS": {provider: {"BACKEND": backend, "OPTIONS": {other: "id"}}}}
    assert validate(gateway) == []
    risks = deploy_risks(GatewaySettings(gateway), debug=False)
    [risk] = [risk for risk in risks if secret in risk.message]
    assert risk.id == "gateway.W104"
    assert risk.message.startswith(f'GATEWAY["ADAPTERS"]["{provider}"]: OPTIONS["{secret}"]')
    complete = {"BACKEND": backend, "OPTIONS": {other: "id", secret: "from-the-env"}}
    assert deploy_risks(GatewaySettings({"ADAPTERS": {provider: complete}}), debug=False) == []
