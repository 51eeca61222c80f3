"""iot_device: the Raspberry Pi agent. Reads the CPU temperature, queues it on disk, sends it to the api.

Standard library only, Python 3.9+ (Raspberry Pi OS's own python3). See device/README.md.
"""
__version__ = "0.1.0"
