"""The Python behind tasks.py: each module does one job for the invoke tasks."""
