"""The Python behind the invoke tasks (tasks/): each module does one job for the invoke tasks."""
