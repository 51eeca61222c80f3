'use strict';
// The course's collector (seed 002: "Le collecteur de données"), rebuilt from the course's snippet as the
// baseline of `./iot bench`'s `collector` scenario: express + body-parser + node-influx + winston, one
// InfluxDB write per request, `sensor_id` a field and `type` a tag, as the course stored them.
// Only the host, port and database come from the environment, so the bench can point it at its influxd.
const express = require('express'),
      Influx = require('influx'),
      bodyParser = require('body-parser'),
      winston = require('winston');

const influx = new Influx.InfluxDB({
  host: process.env.INFLUXDB_HOST || 'localhost',
  port: Number(process.env.INFLUXDB_PORT || 8086),
  database: process.env.INFLUXDB_DB || 'iot'
});

const app = express();
app.use(bodyParser.json());
app.use(bodyParser.urlencoded({ extended: true }));

app.post('/data', function (req, res, next) {
  influx.writePoints([
    {
      measurement: 'data',
      tags: { type: req.body.type },
      fields: { sensor_id: req.body.sensor_id, value: req.body.value },
      timestamp: new Date(req.body.ts).getTime() * 1000000
    }
  ]).then(() => {
    winston.info(req.body);
    return res.sendStatus(201);
  }).catch(err => {
    winston.error(err.message);
    return res.sendStatus(500);
  });
});

app.listen(Number(process.env.PORT || 1337), '127.0.0.1');
