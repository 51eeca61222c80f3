#!/bin/sh
# No init system in a container: package scripts must not try to start services (dpkg: exit 101).
exit 101
