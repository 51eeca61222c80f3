// The live page: districts.json (the map) + config.json (the read-only broker user) + MQTT over
// WebSockets at /mqtt on this page's own origin. No framework, no inline code (the CSP forbids it):
// every element is built with the DOM API and coloured through SVG attributes.
(function () {
  'use strict';

  var SVG = 'http://www.w3.org/2000/svg';
  var TYPES = {
    temp: {name: 'temperature', unit: '°C', digits: 1, span: 4,
      ramp: ['#313695', '#4575b4', '#74add1', '#abd9e9', '#fee090', '#fdae61', '#f46d43', '#d73027', '#a50026']},
    humidity: {name: 'humidity', unit: '%', digits: 0, span: 10,
      ramp: ['#ffffd9', '#edf8b1', '#c7e9b4', '#7fcdbb', '#41b6c4', '#1d91c0', '#225ea8', '#0c2c84']},
    pressure: {name: 'pressure', unit: 'hPa', digits: 1, span: 4,
      ramp: ['#f2f0f7', '#dadaeb', '#bcbddc', '#9e9ac8', '#807dba', '#6a51a3', '#4a1486']}
  };
  var NO_DATA = '#d9dde3';
  var STALE_MS = 5 * 60 * 1000; // the processor's default window: older values are shown greyed
  var SEGMENT = /^[A-Za-z0-9_.-]{1,64}$/;

  var state = {
    type: 'temp',
    map: null,            // districts.json
    districtNames: {},    // id -> name
    sensors: {},          // sensor_id -> {id, meta, district, values: {type: {value, ts}}, row, cells, dot}
    aggs: {},             // 'district/type' -> agg payload (+ tsMs)
    districtRows: {},     // district id -> {row, cells}
    received: 0,
    ignored: 0,
    lastMessage: 0,
    dirty: false
  };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function fmt(value, type) {
    return typeof value === 'number' && isFinite(value) ? value.toFixed(TYPES[type].digits) : '–';
  }

  function age(ms) {
    if (!ms) { return '–'; }
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 90) { return s + ' s'; }
    if (s < 90 * 60) { return Math.round(s / 60) + ' min'; }
    if (s < 36 * 3600) { return Math.round(s / 3600) + ' h'; }
    return Math.round(s / 86400) + ' d';
  }

  // The fleet's names are the open data's id_nom ("00-station-meteo-toulouse-valade"): shown as
  // "Toulouse Valade"; a name with spaces is shown as it is.
  function prettyName(name) {
    if (/\s/.test(name)) { return name; }
    var words = name.replace(/^\d+-/, '').replace(/^station-meteo-/, '').split('-').filter(Boolean);
    return words.map(function (w) { return w.charAt(0).toUpperCase() + w.slice(1); }).join(' ') || name;
  }

  function setStatus(kind, text) {
    var node = document.getElementById('status');
    node.className = 'status status-' + kind;
    node.textContent = text;
  }

  // ---- colour scale --------------------------------------------------------------------------
  function hexToRgb(hex) {
    var n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function colour(value, domain, type) {
    if (typeof value !== 'number' || !isFinite(value)) { return NO_DATA; }
    var ramp = TYPES[type].ramp;
    var t = (value - domain[0]) / (domain[1] - domain[0]);
    t = Math.min(1, Math.max(0, t)) * (ramp.length - 1);
    var i = Math.min(ramp.length - 2, Math.floor(t));
    var a = hexToRgb(ramp[i]), b = hexToRgb(ramp[i + 1]), f = t - i;
    var rgb = a.map(function (c, k) { return Math.round(c + (b[k] - c) * f); });
    return 'rgb(' + rgb.join(',') + ')';
  }

  // The scale follows the data (district means and station values of the selected type), rounded out
  // to whole units and at least TYPES[type].span wide, so small differences still show.
  function domainOf(type) {
    var values = [];
    Object.keys(state.aggs).forEach(function (key) {
      var agg = state.aggs[key];
      if (agg.type === type) { values.push(agg.mean); }
    });
    Object.keys(state.sensors).forEach(function (id) {
      var v = state.sensors[id].values[type];
      if (v) { values.push(v.value); }
    });
    if (!values.length) { return null; }
    var lo = Math.floor(Math.min.apply(null, values)), hi = Math.ceil(Math.max.apply(null, values));
    var span = TYPES[type].span;
    if (hi - lo < span) {
      var mid = (lo + hi) / 2;
      lo = Math.floor(mid - span / 2);
      hi = lo + span;
    }
    return [lo, hi];
  }

  // ---- the map -------------------------------------------------------------------------------
  function project(lat, lon) {
    var p = state.map.projection;
    return [p.x0 + (lon - p.lon0) * p.kx, p.y0 - (lat - p.lat0) * p.ky];
  }

  function buildMap(data) {
    state.map = data;
    var box = data.viewBox;
    var root = svg('svg', {viewBox: box.join(' '), role: 'img', 'aria-labelledby': 'map-title map-desc',
      preserveAspectRatio: 'xMidYMid meet', id: 'map-svg'});
    var title = svg('title', {id: 'map-title'});
    title.textContent = 'Map of Toulouse\'s 20 districts';
    var desc = svg('desc', {id: 'map-desc'});
    desc.textContent = 'Each district is coloured by the live mean of the selected type; dots are weather stations.';
    root.appendChild(title);
    root.appendChild(desc);
    var districts = svg('g', {'class': 'districts'});
    var labels = svg('g', {'class': 'labels', 'aria-hidden': 'true'});
    data.districts.forEach(function (d) {
      state.districtNames[d.id] = d.name;
      var path = svg('path', {id: 'district-' + d.id, 'class': 'district', d: d.path, fill: NO_DATA,
        'fill-rule': 'evenodd', 'data-district': d.id, tabindex: '0'});
      var t = svg('title');
      t.textContent = d.id + ' ' + d.name;
      path.appendChild(t);
      districts.appendChild(path);
      var label = svg('text', {x: d.label.x, y: d.label.y, 'class': 'district-label', 'text-anchor': 'middle',
        'dominant-baseline': 'central'});
      label.textContent = String(d.number);
      labels.appendChild(label);
      districtRow(d.id);
    });
    root.appendChild(districts);
    root.appendChild(labels);
    root.appendChild(svg('g', {'class': 'stations', id: 'station-dots'}));
    document.getElementById('map').appendChild(root);
  }

  function stationDot(sensor) {
    if (sensor.dot || !sensor.meta || typeof sensor.meta.lat !== 'number' || typeof sensor.meta.lon !== 'number') {
      return;
    }
    var xy = project(sensor.meta.lat, sensor.meta.lon), box = state.map.viewBox;
    if (xy[0] < box[0] || xy[1] < box[1] || xy[0] > box[2] || xy[1] > box[3]) {
      return; // a station of another commune, off the map: it is in the table
    }
    sensor.dot = svg('circle', {cx: xy[0].toFixed(1), cy: xy[1].toFixed(1), r: 7, 'class': 'station',
      fill: NO_DATA, 'data-sensor': sensor.id});
    sensor.dotTitle = svg('title');
    sensor.dot.appendChild(sensor.dotTitle);
    document.getElementById('station-dots').appendChild(sensor.dot);
  }

  // ---- tables --------------------------------------------------------------------------------
  function districtSortKey(id) {
    return /^q\d\d$/.test(id) ? '0' + id : '1' + id; // Toulouse's districts first, other communes after
  }

  function insertSorted(tbody, row, key) {
    row.setAttribute('data-key', key);
    var rows = tbody.rows;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].hasAttribute('data-key') && rows[i].getAttribute('data-key') > key) { tbody.insertBefore(row, rows[i]); return; }
    }
    tbody.appendChild(row);
  }

  function districtRow(id) {
    if (state.districtRows[id]) { return state.districtRows[id]; }
    var row = el('tr', {id: 'district-row-' + id, 'data-district': id});
    var number = /^q\d\d$/.test(id) ? String(parseInt(id.slice(1), 10)) : '';
    var cells = {
      number: el('td', {'class': 'num'}, number),
      name: el('th', {scope: 'row'}, state.districtNames[id] || id),
      mean: el('td', {'class': 'num mean'}, '–'),
      min: el('td', {'class': 'num min'}, '–'),
      max: el('td', {'class': 'num max'}, '–'),
      n: el('td', {'class': 'num n'}, '–'),
      age: el('td', {'class': 'num age'}, '–')
    };
    var swatch = el('span', {'class': 'swatch', 'aria-hidden': 'true'});
    cells.swatch = swatch;
    cells.number.insertBefore(swatch, cells.number.firstChild);
    ['number', 'name', 'mean', 'min', 'max', 'n', 'age'].forEach(function (k) { row.appendChild(cells[k]); });
    var body = document.getElementById(/^q\d\d$/.test(id) ? 'districts-toulouse' : 'districts-other');
    body.hidden = false;
    insertSorted(body, row, districtSortKey(id));
    state.districtRows[id] = {row: row, cells: cells};
    return state.districtRows[id];
  }

  function sensorNumber(id) {
    var m = /(\d+)$/.exec(id);
    return m ? ('000000' + m[1]).slice(-6) : id;
  }

  function sensorOf(id) {
    if (state.sensors[id]) { return state.sensors[id]; }
    var sensor = {id: id, meta: null, district: '', values: {}, newest: 0};
    var row = el('tr', {id: 'sensor-' + id, 'data-sensor': id});
    var name = el('th', {scope: 'row'});
    sensor.nameText = el('span', {'class': 'station-name'}, id);
    sensor.idText = el('span', {'class': 'station-id'}, '');
    name.appendChild(sensor.nameText);
    name.appendChild(sensor.idText);
    sensor.cells = {
      district: el('td', {'class': 'district-cell'}, '–'),
      temp: el('td', {'class': 'num v-temp'}, '–'),
      humidity: el('td', {'class': 'num v-humidity'}, '–'),
      pressure: el('td', {'class': 'num v-pressure'}, '–'),
      age: el('td', {'class': 'num age'}, '–')
    };
    row.appendChild(name);
    ['district', 'temp', 'humidity', 'pressure', 'age'].forEach(function (k) { row.appendChild(sensor.cells[k]); });
    sensor.row = row;
    state.sensors[id] = sensor;
    placeSensorRow(sensor);
    return sensor;
  }

  function placeSensorRow(sensor) {
    var key = districtSortKey(sensor.district || 'zz') + '/' + sensorNumber(sensor.id);
    if (sensor.row.getAttribute('data-key') === key) { return; }
    insertSorted(document.querySelector('#stations tbody'), sensor.row, key);
  }

  function setDistrict(sensor, district) {
    if (!district || sensor.district === district) { return; }
    sensor.district = district;
    var name = state.districtNames[district];
    sensor.cells.district.textContent = name ? district + ' ' + name.split(' /')[0] : district;
    sensor.cells.district.title = name || district;
    placeSensorRow(sensor);
  }

  // ---- messages ------------------------------------------------------------------------------
  function parse(payload) {
    try {
      var value = JSON.parse(new TextDecoder().decode(payload));
      return value && typeof value === 'object' ? value : null;
    } catch (e) {
      return null;
    }
  }

  function onReading(parts, msg) {
    var district = parts[1], id = parts[2], type = parts[3];
    var ts = Date.parse(msg.ts);
    if (!TYPES[type] || typeof msg.value !== 'number' || !isFinite(msg.value) || isNaN(ts)) { return false; }
    var sensor = sensorOf(id);
    var previous = sensor.values[type];
    if (previous && previous.ts > ts) { return true; } // an older reading arriving late: keep the newer one
    sensor.values[type] = {value: msg.value, ts: ts};
    sensor.newest = Math.max(sensor.newest, ts);
    setDistrict(sensor, sensor.district || district);
    var cell = sensor.cells[type];
    cell.textContent = fmt(msg.value, type);
    cell.setAttribute('data-shown', String(Date.now())); // when the value reached the page (the latency test reads it)
    cell.classList.remove('stale');
    sensor.cells.age.textContent = age(sensor.newest);
    sensor.row.classList.remove('stale');
    return true;
  }

  function onMeta(msg) {
    if (typeof msg.sensor_id !== 'string' || !SEGMENT.test(msg.sensor_id)) { return false; }
    var sensor = sensorOf(msg.sensor_id);
    sensor.meta = msg;
    sensor.name = typeof msg.name === 'string' && msg.name ? prettyName(msg.name) : msg.sensor_id;
    sensor.nameText.textContent = sensor.name;
    sensor.idText.textContent = msg.sensor_id + (msg.kind ? ' · ' + msg.kind : '');
    if (typeof msg.district === 'string' && msg.district) {
      if (msg.district_name && !state.districtNames[msg.district]) { state.districtNames[msg.district] = msg.district_name; }
      sensor.district = '';
      setDistrict(sensor, msg.district);
    }
    stationDot(sensor);
    return true;
  }

  function onAgg(parts, msg) {
    var district = parts[1], type = parts[2];
    var ts = Date.parse(msg.ts);
    if (!TYPES[type] || typeof msg.mean !== 'number' || !isFinite(msg.mean)) { return false; }
    msg.tsMs = isNaN(ts) ? 0 : ts;
    msg.type = type;
    state.aggs[district + '/' + type] = msg;
    if (msg.district_name && !state.districtNames[district]) { state.districtNames[district] = msg.district_name; }
    districtRow(district);
    return true;
  }

  function onMessage(topic, payload) {
    state.received += 1;
    state.lastMessage = Date.now();
    var parts = topic.split('/');
    var msg = parse(payload);
    var ok = false;
    if (!payload.length && parts[0] === 'agg' && parts.length === 3 && state.aggs[parts[1] + '/' + parts[2]]) {
      // the processor clears a district's retained aggregate when its window empties: no data now
      delete state.aggs[parts[1] + '/' + parts[2]];
      districtRow(parts[1]);
      ok = true;
    } else if (msg && parts.every(function (p) { return SEGMENT.test(p); })) {
      if (parts[0] === 'iot' && parts.length === 4) { ok = onReading(parts, msg); }
      else if (parts[0] === 'meta' && parts[1] === 'sensors' && parts.length === 3) { ok = onMeta(msg); }
      else if (parts[0] === 'agg' && parts.length === 3) { ok = onAgg(parts, msg); }
    }
    if (!ok) { state.ignored += 1; }
    schedule();
  }

  // ---- rendering (the map, the legend, the district table: at most once per frame) --------------
  function schedule() {
    if (state.dirty) { return; }
    state.dirty = true;
    if (window.requestAnimationFrame) { window.requestAnimationFrame(render); } else { setTimeout(render, 16); }
  }

  function render() {
    state.dirty = false;
    if (!state.map) { return; }
    var type = state.type, spec = TYPES[type], domain = domainOf(type);
    Object.keys(state.districtRows).forEach(function (id) {
      var agg = state.aggs[id + '/' + type];
      var entry = state.districtRows[id], cells = entry.cells;
      var fill = agg && domain ? colour(agg.mean, domain, type) : NO_DATA;
      cells.mean.textContent = agg ? fmt(agg.mean, type) : '–';
      cells.min.textContent = agg ? fmt(agg.min, type) : '–';
      cells.max.textContent = agg ? fmt(agg.max, type) : '–';
      cells.n.textContent = agg && typeof agg.n === 'number' ? String(agg.n) : '–';
      cells.age.textContent = agg ? age(agg.tsMs) : '–';
      cells.swatch.setAttribute('data-fill', fill);
      entry.row.classList.toggle('stale', !!agg && Date.now() - agg.tsMs > STALE_MS);
      var path = document.getElementById('district-' + id);
      if (path) {
        path.setAttribute('fill', fill);
        path.setAttribute('data-mean', agg ? String(agg.mean) : '');
        path.firstChild.textContent = id + ' ' + (state.districtNames[id] || '') +
          (agg ? ': mean ' + fmt(agg.mean, type) + ' ' + spec.unit + ' (min ' + fmt(agg.min, type) + ', max ' +
            fmt(agg.max, type) + ', n ' + agg.n + ')' : ': no data');
      }
    });
    Object.keys(state.sensors).forEach(function (id) {
      var sensor = state.sensors[id];
      if (!sensor.dot) { return; }
      var v = sensor.values[type];
      sensor.dot.setAttribute('fill', v && domain ? colour(v.value, domain, type) : NO_DATA);
      var name = sensor.name || id;
      sensor.dotTitle.textContent = name + ' (' + id + '): ' + (v ? fmt(v.value, type) + ' ' + spec.unit : 'no ' + spec.name);
    });
    paintSwatches();
    legend(domain, type);
    summary();
  }

  // Table swatches are HTML: colour them with a small SVG (presentation attributes, allowed by the CSP).
  function paintSwatches() {
    Object.keys(state.districtRows).forEach(function (id) {
      var swatch = state.districtRows[id].cells.swatch, fill = swatch.getAttribute('data-fill');
      if (swatch.getAttribute('data-painted') === fill) { return; }
      swatch.textContent = '';
      var s = svg('svg', {viewBox: '0 0 10 10', width: '10', height: '10'});
      s.appendChild(svg('rect', {width: '10', height: '10', rx: '2', fill: fill}));
      swatch.appendChild(s);
      swatch.setAttribute('data-painted', fill);
    });
  }

  function legend(domain, type) {
    var node = document.getElementById('legend');
    var key = domain ? type + domain.join(',') : 'none';
    if (node.getAttribute('data-key') === key) { return; }
    node.setAttribute('data-key', key);
    node.textContent = '';
    var spec = TYPES[type];
    var width = 360, root = svg('svg', {viewBox: '0 0 ' + (width + 120) + ' 46', role: 'img',
      'aria-labelledby': 'legend-title', 'class': 'legend-svg'});
    var title = svg('title', {id: 'legend-title'});
    title.textContent = domain ? 'Colour scale: ' + spec.name + ' from ' + domain[0] + ' to ' + domain[1] + ' ' + spec.unit
      : 'Colour scale: no data yet';
    root.appendChild(title);
    var defs = svg('defs'), grad = svg('linearGradient', {id: 'legend-gradient', x1: '0', x2: '1', y1: '0', y2: '0'});
    spec.ramp.forEach(function (c, i) {
      grad.appendChild(svg('stop', {offset: (i / (spec.ramp.length - 1)).toFixed(3), 'stop-color': c}));
    });
    defs.appendChild(grad);
    root.appendChild(defs);
    root.appendChild(svg('rect', {x: 10, y: 6, width: width, height: 14, rx: 3,
      fill: domain ? 'url(#legend-gradient)' : NO_DATA}));
    if (domain) {
      var span = domain[1] - domain[0], step = [1, 2, 5, 10, 20, 50, 100].filter(function (s) { return span / s <= 6; })[0] || 200;
      for (var v = Math.ceil(domain[0] / step) * step; v <= domain[1]; v += step) {
        var x = 10 + width * (v - domain[0]) / span;
        root.appendChild(svg('line', {x1: x, x2: x, y1: 20, y2: 25, 'class': 'tick'}));
        var t = svg('text', {x: x, y: 38, 'text-anchor': 'middle', 'class': 'legend-text'});
        t.textContent = String(v) + (v + step > domain[1] ? ' ' + spec.unit : '');
        root.appendChild(t);
      }
    }
    root.appendChild(svg('rect', {x: width + 40, y: 6, width: 14, height: 14, rx: 3, fill: NO_DATA}));
    var nd = svg('text', {x: width + 60, y: 17, 'class': 'legend-text'});
    nd.textContent = 'no data';
    root.appendChild(nd);
    node.appendChild(root);
  }

  function summary() {
    var ids = Object.keys(state.sensors);
    var fresh = ids.filter(function (id) { return Date.now() - state.sensors[id].newest < STALE_MS; }).length;
    var districts = Object.keys(state.aggs).filter(function (k) { return state.aggs[k].type === state.type; }).length;
    document.getElementById('summary').textContent = ids.length + ' stations (' + fresh + ' reporting in the last 5 min) · ' +
      districts + ' districts or communes with a ' + TYPES[state.type].name + ' mean · ' + state.received + ' messages' +
      (state.ignored ? ' (' + state.ignored + ' ignored)' : '') +
      (state.lastMessage ? ' · last ' + age(state.lastMessage) + ' ago' : '');
  }

  // Ages tick every second (text only; values change on messages).
  function tick() {
    Object.keys(state.sensors).forEach(function (id) {
      var sensor = state.sensors[id];
      sensor.cells.age.textContent = age(sensor.newest);
      var stale = !sensor.newest || Date.now() - sensor.newest > STALE_MS;
      sensor.row.classList.toggle('stale', stale);
    });
    Object.keys(state.districtRows).forEach(function (id) {
      var agg = state.aggs[id + '/' + state.type];
      state.districtRows[id].cells.age.textContent = agg ? age(agg.tsMs) : '–';
    });
    summary();
  }

  // ---- start ---------------------------------------------------------------------------------
  function getJSON(url) {
    return fetch(url, {cache: 'no-store', credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) { throw new Error(url + ': HTTP ' + r.status); }
      return r.json();
    });
  }

  function connect(config) {
    var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/mqtt';
    var client = window.mqtt.connect(url, {
      username: config.username,
      password: config.password,
      clientId: 'web-' + Math.random().toString(16).slice(2, 10),
      clean: true,            // a display needs no session: retained meta/# and agg/# refill it on connect
      keepalive: 30,
      reconnectPeriod: 2000,
      connectTimeout: 10000,
      resubscribe: true,
      // 'auto' would run the keepalive timer in a Worker made from a blob: URL, which the CSP refuses
      // (worker-src falls back to script-src 'self'). Native timers: a hidden tab may ping late, well
      // within the broker's 1.5 x keepalive.
      timerVariant: 'native'
    });
    client.on('connect', function () {
      setStatus('connected', 'connected');
      client.subscribe({'iot/+/+/+': {qos: 0}, 'meta/sensors/+': {qos: 0}, 'agg/+/+': {qos: 0}}, function (err) {
        if (err) { setStatus('error', 'subscribe refused: ' + err.message); }
      });
    });
    client.on('reconnect', function () { setStatus('connecting', 'reconnecting…'); });
    client.on('offline', function () { setStatus('offline', 'offline (retrying)'); });
    client.on('error', function (err) { setStatus('error', 'broker: ' + (err && err.message ? err.message : err)); });
    client.on('message', onMessage);
  }

  function start() {
    var select = document.getElementById('type-select');
    state.type = TYPES[select.value] ? select.value : 'temp';
    select.addEventListener('change', function () {
      state.type = TYPES[select.value] ? select.value : 'temp';
      document.getElementById('map-type').textContent = TYPES[state.type].name;
      document.getElementById('districts-type').textContent = TYPES[state.type].name;
      schedule();
    });
    document.getElementById('map-type').textContent = TYPES[state.type].name;
    document.getElementById('districts-type').textContent = TYPES[state.type].name;
    Promise.all([getJSON('districts.json'), getJSON('config.json')]).then(function (results) {
      buildMap(results[0]);
      render();
      if (!window.mqtt) { throw new Error('the MQTT client (vendor/mqtt.min.js) did not load'); }
      connect(results[1]);
      setInterval(tick, 1000);
    }).catch(function (err) {
      setStatus('error', String(err && err.message ? err.message : err));
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
}());
