"""The MQTT fleet: Toulouse Métropole's weather stations, emulated (docs/mqtt.md, "The fleet").

Données: Toulouse Métropole, open data, ODbL (stations.json is derived from them; see README.md).
"""
