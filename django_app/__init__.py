"""The Django app of the gateway (label ``gateway``): system checks and management commands."""
