"""The HTTP api: receives IoT readings, stores them in InfluxDB, serves them back as JSON."""
__version__ = "0.1.0"
