#!/usr/bin/env python3
"""Writes the scaling simulator's three traces (README, "Scaling simulator").

Each line is arrival,duration,user in seconds; arrivals count from Monday 00:00 UTC.
Deterministic (a fixed seed), so the committed files are what this script writes:
    python3 tests/sim/make_traces.py
"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
USERS = ["ana", "ben", "chen", "dana", "eli", "fatma", "gus", "hana"]


def job(rng, t):
    """A job of 1 to 20 minutes by one of the analysts."""
    return (round(t, 1), rng.randint(60, 1200), rng.choice(USERS))


def poisson(rng, start, end, per_hour):
    """Arrivals at `per_hour` on average between start and end (seconds)."""
    out, t = [], start
    while True:
        t += rng.expovariate(per_hour / 3600.0)
        if t >= end:
            return out
        out.append(t)


def bursty_workday(rng):
    """Monday 08:00–18:00: a trickle of 4 jobs an hour, and every 25 to 60 minutes a
    burst of 5 to 30 jobs within 1 to 3 minutes (an analyst launching a batch)."""
    start, end = 8 * 3600, 18 * 3600
    times = poisson(rng, start, end, 4)
    t = start + rng.uniform(5, 20) * 60
    while t < end - 1800:
        size, spread = rng.randint(5, 30), rng.uniform(60, 180)
        times += [t + rng.uniform(0, spread) for _ in range(size)]
        t += rng.uniform(25, 60) * 60
    return [job(rng, x) for x in sorted(times)]


def flat(rng):
    """Monday 00:00–24:00 at a steady 30 jobs an hour."""
    return [job(rng, x) for x in poisson(rng, 0, 86400, 30)]


def weekly_surge(rng):
    """Monday to Sunday: 1 job an hour at night, 5 an hour 07:00–20:00, and every day a
    morning surge at 09:00: 40 jobs in its first 5 minutes (everyone starts the day's
    runs), then 20 more over the rest of the hour."""
    times = []
    for day in range(7):
        d = day * 86400
        times += poisson(rng, d, d + 7 * 3600, 1)
        times += poisson(rng, d + 7 * 3600, d + 20 * 3600, 5)
        times += poisson(rng, d + 20 * 3600, d + 86400, 1)
        nine = d + 9 * 3600
        times += [nine + rng.uniform(0, 300) for _ in range(40)]
        times += [nine + rng.uniform(300, 3600) for _ in range(20)]
    return [job(rng, x) for x in sorted(times)]


def write(name, rows):
    with open(os.path.join(HERE, name), "w") as f:
        f.write("arrival,duration,user\n")
        for a, d, u in rows:
            f.write(f"{a},{d},{u}\n")


if __name__ == "__main__":
    write("bursty-workday.csv", bursty_workday(random.Random(1)))
    write("flat.csv", flat(random.Random(2)))
    write("weekly-surge.csv", weekly_surge(random.Random(3)))
