"""`SMSFromRouter` and `SMSToRouter`: pick an application by phone number prefix or country.

Numbers are normalised to E.164 first (``+447700900123``). Without the optional
``phonenumbers`` package that is done by hand: channel prefixes (``whatsapp:``), spaces,
dashes, dots, brackets, a ``(0)`` trunk digit and a leading ``00`` go away. With it
(``pip install django-protocol-gateway[phone]``) any format phonenumbers understands is
accepted, and `country()` routes can tell Canada from the United States inside ``+1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway import sms as rules
from gateway.exceptions import RouteNotFound
from gateway.sms import is_e164, normalize_number, number_country, split_channel
from gateway.types import AnyASGIApp, Receive, Scope, Send
from routers.url import check_application, merge_url_route

__all__ = [
    "SMSFromRouter",
    "SMSToRouter",
    "country",
    "is_e164",
    "normalize_number",
    "number_country",
    "phone",
    "split_channel",
]


@dataclass(frozen=True)
class PhoneRoute:
    """A `phone()` route: numbers starting with ``prefix`` go to ``application``."""

    prefix: str
    application: AnyASGIApp


@dataclass(frozen=True)
class CountryRoute:
    """A `country()` route: numbers of ISO country ``code`` go to ``application``."""

    code: str
    calling_code: str
    application: AnyASGIApp


Route = PhoneRoute | CountryRoute


def phone(prefix: str, application: AnyASGIApp) -> PhoneRoute:
    """Route numbers starting with an E.164 prefix (``"+44"``, ``"+1416"``) to ``application``."""
    compact = rules.NUMBER_PUNCTUATION.sub("", prefix) if isinstance(prefix, str) else prefix
    if not isinstance(compact, str) or rules.PHONE_PREFIX.fullmatch(compact) is None:
        raise ValueError(
            f"phone(): invalid prefix {prefix!r}: expected '+' and 1-15 digits, e.g. '+44'."
        )
    check_application(application, f"phone({prefix!r})")
    return PhoneRoute(compact, application)


def country(code: str, application: AnyASGIApp) -> CountryRoute:
    """Route numbers of one ISO 3166 country (``"CA"``) to ``application``; needs phonenumbers."""
    module = rules.phonenumbers_module()
    if module is None:
        raise ImportError(
            "country() routes need the phonenumbers package: "
            "pip install 'django-protocol-gateway[phone]'."
        )
    upper = code.upper() if isinstance(code, str) else ""
    calling_code = module.country_code_for_region(upper) if upper else 0
    if not calling_code:
        raise ValueError(f"country(): unknown ISO 3166-1 alpha-2 country code {code!r}.")
    check_application(application, f"country({code!r})")
    return CountryRoute(upper, f"+{calling_code}", application)


class _PhoneRouter:
    """Longest matching prefix wins; a country route ranks just above its calling code."""

    scope_key: ClassVar[str]

    def __init__(self, routes: Sequence[Route], default: AnyASGIApp | None = None) -> None:
        self.routes = list(routes)
        self.default = default
        self._prefixes: dict[str, PhoneRoute] = {}
        self._countries: dict[str, CountryRoute] = {}
        for route in self.routes:
            self._add(route)

    def _add(self, route: Route) -> None:
        name = type(self).__name__
        if isinstance(route, PhoneRoute):
            if route.prefix in self._prefixes:
                raise ValueError(f"{name}: prefix {route.prefix!r} is routed twice.")
            self._prefixes[route.prefix] = route
        elif isinstance(route, CountryRoute):
            if route.code in self._countries:
                raise ValueError(f"{name}: country {route.code!r} is routed twice.")
            self._countries[route.code] = route
        else:
            raise TypeError(f"{name}: expected phone() or country() routes, got {route!r}.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        raw = scope.get(self.scope_key)
        if not isinstance(raw, str):
            raise ValueError(f"No {self.scope_key!r} number in the sms scope, cannot route.")
        number, whatsapp = split_channel(raw)
        number = normalize_number(number)
        application, kwargs = self.resolve(number)
        url_route = merge_url_route(scope, (), kwargs)
        scope = {**scope, self.scope_key: number, "url_route": url_route}
        scope["whatsapp"] = bool(scope.get("whatsapp")) or whatsapp
        return await application(scope, receive, send)

    def resolve(self, number: str) -> tuple[AnyASGIApp, dict[str, str]]:
        """The application for a normalised number, and what matched (prefix or country)."""
        best = self._best_prefix(number)
        found = self._country(number)
        if found is not None and (best is None or len(best.prefix) <= len(found.calling_code)):
            return found.application, {"country": found.code}
        if best is not None:
            return best.application, {"prefix": best.prefix}
        if self.default is not None:
            return self.default, {}
        raise RouteNotFound(f"No route found for {self.scope_key} number {number!r}.")

    def _best_prefix(self, number: str) -> PhoneRoute | None:
        if not is_e164(number):
            return None  # short codes and alphanumeric senders only reach the default
        for end in range(len(number), 1, -1):
            route = self._prefixes.get(number[:end])
            if route is not None:
                return route
        return None

    def _country(self, number: str) -> CountryRoute | None:
        if not self._countries:
            return None
        code = number_country(number)
        return self._countries.get(code) if code else None


class SMSFromRouter(_PhoneRouter):
    """Routes an ``sms`` scope by its sender (``scope["from"]``)."""

    scope_key = "from"


class SMSToRouter(_PhoneRouter):
    """Routes an ``sms`` scope by the number it was sent to (``scope["to"]``)."""

    scope_key = "to"
