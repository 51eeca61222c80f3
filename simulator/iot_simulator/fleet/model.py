"""Plausible values for one station: Toulouse's climate, the station's surroundings, noise and faults.

temp = seasonal daily mean and range for the date (Toulouse-Blagnac normals: January 3/10 °C,
       July 17/30 °C), shaped by a daily cycle with its minimum near dawn and its maximum at 15:00 solar
       time, + a weather anomaly shared by the fleet (slow, days) + the urban heat island (strongest at
       night; from the local climate zone and the built / tall-vegetation areas around the station)
       - 6.5 °C/km above 150 m + a fixed per-station bias + per-station noise (slow AR(1) + white).
humidity = from a dew point that barely moves during the day, so it falls when temp rises (anti-correlated).
pressure = hPa reduced to sea level: 1013.25 + a slow synoptic drift (± ~10 hPa over days) + the
       semidiurnal tide (±0.6 hPa) + a small per-station bias and noise.
Faults (unless disabled): a station goes silent for 2-7 minutes about once every 3 hours, and about
once every 6 hours sends a -50 °C temperature (the real sensors' fault value, data README).

Everything random comes from generators seeded by (seed, sensor_id): with a seed, the values at given
times are reproducible and independent of how many stations run. Times are UNIX seconds (UTC).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

TWO_PI = 2 * math.pi
DAY = 86_400.0
YEAR_DAYS = 365.25
REF_ALTITUDE = 150.0  # m, roughly Toulouse-Blagnac's; the lapse rate is relative to it
LAPSE = 0.0065  # °C per m
# bati / veg_haute are areas in m² around each station; assumed within 250 m (the largest values,
# 121,000 and 150,000 m², fit in that disc's 196,350 m²).
BUFFER_AREA = math.pi * 250 ** 2
# Nocturnal urban heat island by local climate zone (Stewart & Oke 2012 ranges, rounded): 1-10 built
# types, 11+ land cover (11 dense trees, 12 scattered trees, 13 bush, 14 low plants...).
LCZ_UHI = {1: 2.5, 2: 2.2, 3: 1.8, 4: 1.4, 5: 1.2, 6: 0.9, 7: 1.0, 8: 1.0, 9: 0.4, 10: 0.8,
           11: -0.4, 12: -0.2, 13: 0.0, 14: 0.0, 15: 0.3, 16: 0.0, 17: 0.0}
GLITCH_TEMP = -50.0
OUTAGE_EVERY = 3 * 3600.0  # seconds, mean time between two outages of one station
OUTAGE_MIN, OUTAGE_MAX = 120.0, 420.0
GLITCH_EVERY = 6 * 3600.0  # seconds, mean time between two -50 °C readings of one station
NOISE_TAU = 600.0  # s, correlation time of the slow per-station noise


def _rng(seed: int | None, *parts: str) -> random.Random:
    # A str seed is hashed with SHA-512 (random.seed version 2): stable across processes, unlike hash().
    return random.Random() if seed is None else random.Random(":".join([str(seed), *parts]))


def day_of_year(t: float) -> float:
    """Fractional day of the year (0 = 1 January 00:00 UTC), good to a day: enough for a climate."""
    days = t / DAY
    return (days - 10957.0) % YEAR_DAYS  # 10957 days from 1970-01-01 to 2000-01-01


def seasonal(t: float) -> tuple[float, float]:
    """(daily mean °C, half the daily range °C) for the date: coldest mid-January, warmest mid-July."""
    c = math.cos(TWO_PI * (day_of_year(t) - 15.0) / YEAR_DAYS)  # 1 mid-January, -1 mid-July
    return 14.5 - 8.2 * c, 5.0 - 1.3 * c


def solar_hour(t: float, lon: float) -> float:
    return (t / 3600.0 + lon / 15.0) % 24.0


def dawn_hour(t: float) -> float:
    """Sunrise in solar hours at 43.6° N: ~7.6 h in December, ~4.4 h in June."""
    return 6.0 + 1.6 * math.cos(TWO_PI * (day_of_year(t) + 10.0) / YEAR_DAYS)


PEAK_HOUR = 15.0


def daily_shape(hour: float, dawn: float) -> float:
    """-1 at dawn, +1 at 15:00, half-cosines in between (rising by day, falling through the night)."""
    if dawn <= hour <= PEAK_HOUR:
        return -math.cos(math.pi * (hour - dawn) / (PEAK_HOUR - dawn))
    since_peak = (hour - PEAK_HOUR) % 24.0
    return math.cos(math.pi * since_peak / (24.0 - PEAK_HOUR + dawn))


def night_weight(hour: float) -> float:
    """1 around 03:00, 0 around 15:00: the urban heat island is mostly a night effect."""
    return (1.0 + math.cos(TWO_PI * (hour - 3.0) / 24.0)) / 2.0


class Weather:
    """The fleet's shared weather: slow anomalies of temperature, dew point and pressure, as sums of
    sinusoids with periods of days and phases from the seed (a smooth function of time only)."""

    def __init__(self, seed: int | None):
        rng = _rng(seed, "weather")
        self.temp = [(a, p * DAY, rng.uniform(0, TWO_PI)) for a, p in ((1.6, 2.7), (1.1, 5.3), (0.8, 9.1))]
        self.dew = [(a, p * DAY, rng.uniform(0, TWO_PI)) for a, p in ((1.2, 3.1), (0.9, 6.7))]
        self.pressure = [(a, p * DAY, rng.uniform(0, TWO_PI)) for a, p in ((5.5, 3.9), (3.5, 7.3), (1.5, 1.7))]
        self._cached: tuple[float, tuple[float, float, float]] | None = None

    @staticmethod
    def _sum(terms, t: float) -> float:
        return sum(a * math.sin(TWO_PI * t / p + ph) for a, p, ph in terms)

    def anomalies(self, t: float) -> tuple[float, float, float]:
        # The stations of one tick share t: computed once for all of them.
        if self._cached is None or self._cached[0] != t:
            self._cached = (t, (self._sum(self.temp, t), self._sum(self.dew, t), self._sum(self.pressure, t)))
        return self._cached[1]


@dataclass
class Reading:
    type: str
    value: float


def urban_heat(station: dict) -> float:
    """Nocturnal heat island (°C) of a station, from its LCZ and the built / tall-vegetation shares."""
    bati = min((station.get("bati") or 0.0) / BUFFER_AREA, 1.0)
    veg = min((station.get("veg_haute") or 0.0) / BUFFER_AREA, 1.0)
    lcz = LCZ_UHI.get(station.get("lcz"), 0.8)
    if station.get("bati") is None:  # unknown surroundings: the LCZ only
        bati, veg = 0.25, 0.2
    return max(-1.0, 0.5 * lcz + 2.5 * (bati - 0.25) - 1.5 * (veg - 0.2))


class StationModel:
    """Values of one station at successive times (call `readings` with increasing t)."""

    def __init__(self, station: dict, weather: Weather, seed: int | None, faults: bool = True):
        self.station = station
        self.types = list(station["types"])
        self.weather = weather
        self.lon = float(station["lon"])
        self.uhi = urban_heat(station)
        self.altitude_offset = -LAPSE * (float(station["altitude"]) - REF_ALTITUDE)
        self.moisture = 0.8 * min((station.get("veg_haute") or 0.0) / BUFFER_AREA, 1.0)  # trees add moisture
        sid = station["sensor_id"]
        self.rng = _rng(seed, sid, "values")
        self.bias_t = self.rng.gauss(0.0, 0.25)
        self.bias_h = self.rng.gauss(0.0, 1.5)
        self.bias_p = self.rng.gauss(0.0, 0.2)
        self.slow_t = self.rng.gauss(0.0, 0.3)
        self.last_t: float | None = None
        self.faults = faults
        self.fault_rng = _rng(seed, sid, "faults")  # its own stream: --no-faults leaves the values alone
        self.silent_until = 0.0

    def temperature(self, t: float) -> float:
        """The true temperature at t without per-reading noise (°C)."""
        mean, half_range = seasonal(t)
        hour = solar_hour(t, self.lon)
        anomaly_t = self.weather.anomalies(t)[0]
        return (mean + half_range * daily_shape(hour, dawn_hour(t)) + anomaly_t
                + self.uhi * (0.3 + 0.7 * night_weight(hour)) + self.altitude_offset + self.bias_t)

    def silent(self, t: float, dt: float) -> bool:
        """Whether the station is in an outage at t (dt: time since its previous tick)."""
        if not self.faults:
            return False
        if t < self.silent_until:
            return True
        if self.fault_rng.random() < dt / OUTAGE_EVERY:
            self.silent_until = t + self.fault_rng.uniform(OUTAGE_MIN, OUTAGE_MAX)
            return True
        return False

    def readings(self, t: float) -> list[Reading]:
        """The station's readings at t (one per type), or [] while it is silent."""
        dt = 1.0 if self.last_t is None else max(t - self.last_t, 1e-3)
        self.last_t = t
        # Slow noise: AR(1) with a 10 min correlation time whatever the interval, stationary sd 0.3 °C.
        phi = math.exp(-dt / NOISE_TAU)
        self.slow_t = phi * self.slow_t + math.sqrt(1.0 - phi * phi) * self.rng.gauss(0.0, 0.3)
        white = self.rng.gauss(0.0, 0.05)
        white_h = self.rng.gauss(0.0, 0.6)
        white_p = self.rng.gauss(0.0, 0.05)
        if self.silent(t, dt):
            return []
        temp = self.temperature(t) + self.slow_t + white
        mean, _ = seasonal(t)
        _, anomaly_d, anomaly_p = self.weather.anomalies(t)
        c = math.cos(TWO_PI * (day_of_year(t) - 15.0) / YEAR_DAYS)
        dew = mean - (6.5 - 2.5 * c) + anomaly_d + self.moisture
        out = []
        for kind in self.types:
            if kind == "temp":
                glitch = self.faults and self.fault_rng.random() < dt / GLITCH_EVERY
                out.append(Reading("temp", GLITCH_TEMP if glitch else round(temp, 2)))
            elif kind == "humidity":
                rh = relative_humidity(temp, dew) + self.bias_h + white_h
                out.append(Reading("humidity", round(min(max(rh, 8.0), 100.0), 1)))
            elif kind == "pressure":
                hour = solar_hour(t, self.lon)
                p = 1013.25 + anomaly_p + 0.6 * math.cos(TWO_PI * (hour - 10.0) / 12.0) + self.bias_p + white_p
                out.append(Reading("pressure", round(p, 1)))
        return out


def relative_humidity(temp: float, dew: float) -> float:
    """% from temperature and dew point (Magnus formula); a dew point above temp saturates at 100."""
    def e(x: float) -> float:
        return math.exp(17.625 * x / (243.04 + x))
    return 100.0 * e(min(dew, temp)) / e(temp)
