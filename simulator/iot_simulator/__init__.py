"""The IoT device simulator: many simulated sensors posting readings to the api (see cli.py)."""

__version__ = "0.1.0"
