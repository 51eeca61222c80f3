"""The MQTT side of ingest: the historian (MQTT -> InfluxDB) and the per-district processor.

They live beside the HTTP api (same image, same reading rules: iot_api.readings) because they are the
api's second door: a reading is valid on MQTT exactly when it is valid on POST /data.
"""
