"""The "long" Hypothesis profile: 100 times the default examples, no deadline.

``pytest tests/email/test_parse_fuzz.py --hypothesis-profile long`` (tests/README.md). Without
it the defaults apply (100 examples, 200 ms each); tests that set their own settings keep them.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "long", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
