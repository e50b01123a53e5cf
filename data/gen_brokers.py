#!/usr/bin/env python3
"""Regenerates data/brokers.json, the demo brokers (deterministic: seed 7).

250 brokers over 25 states with varied licences, specialties, capacity, SLAs and schedules.
About a third keep weekday hours in their time zone; the rest work around the clock so the
demo routes at any hour. Run: python3 data/gen_brokers.py > data/brokers.json
"""
import json
import random

rng = random.Random(7)
STATES = {
    "CA": "America/Los_Angeles", "WA": "America/Los_Angeles", "OR": "America/Los_Angeles",
    "NV": "America/Los_Angeles", "AZ": "America/Phoenix", "CO": "America/Denver",
    "UT": "America/Denver", "TX": "America/Chicago", "IL": "America/Chicago",
    "MN": "America/Chicago", "MO": "America/Chicago", "WI": "America/Chicago",
    "TN": "America/Chicago", "NY": "America/New_York", "NJ": "America/New_York",
    "PA": "America/New_York", "MA": "America/New_York", "FL": "America/New_York",
    "GA": "America/New_York", "NC": "America/New_York", "VA": "America/New_York",
    "OH": "America/New_York", "MI": "America/Detroit", "MD": "America/New_York",
    "CT": "America/New_York",
}
REGION = {"America/Los_Angeles": "west", "America/Phoenix": "mountain", "America/Denver": "mountain",
          "America/Chicago": "central", "America/New_York": "east", "America/Detroit": "east"}
LINES = ["AUTO", "HOME", "RENTERS", "LIFE", "HEALTH", "COMMERCIAL", "UMBRELLA"]
FIRST = ["Ana", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kira",
         "Luis", "Maya", "Nate", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
         "Wen", "Xavi", "Yara", "Zoe"]
LAST = ["Ruiz", "Chen", "Patel", "Okafor", "Smith", "Novak", "Kim", "Silva", "Berg", "Haddad",
        "Ito", "Moreau", "Dubois", "Kowalski", "Nguyen", "Rossi", "Schmidt", "Tanaka", "Walsh"]

brokers = []
states = list(STATES)
for i in range(250):
    home = states[i % len(states)]
    tz = STATES[home]
    n_lines = rng.choice([2, 2, 3, 3, 4, 5])
    lines = sorted(rng.sample(LINES[:5] if rng.random() < 0.7 else LINES, n_lines), key=LINES.index)
    if i % 5 == 0 and "AUTO" not in lines:
        lines = ["AUTO"] + lines
    if i % 5 == 0 and "HOME" not in lines:
        lines = sorted(lines + ["HOME"], key=LINES.index)
    specialties = [{"type": l, "proficiency": rng.randint(1, 5)} for l in lines]
    licence_states = [home] + rng.sample([s for s in states if s != home], rng.choice([0, 0, 1, 2]))
    licenses = []
    for s in licence_states:
        year = rng.choice([2027, 2028, 2029, 2030])
        licenses.append({"state": s, "lines": lines, "expiresOn": f"{year}-{rng.randint(1, 12):02d}-28"})
    max_c = rng.choice([5, 10, 15, 20, 25, 30, 40])
    b = {
        "id": f"broker-{home.lower()}-{i // len(states) + 1}",
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "specialties": specialties,
        "licenses": licenses,
        "capacity": {"maxConcurrent": max_c, "dailyCap": max_c * rng.choice([2, 3, 4])},
        "sla": {"firstContactMinutes": rng.choice([15, 30, 45, 60, 120]),
                "acceptTimeoutSeconds": rng.choice([120, 300, 600])},
        "status": "available" if rng.random() < 0.92 else rng.choice(["away", "offline"]),
        "weight": rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]),
        "costPerLead": rng.choice([8.0, 10.0, 12.5, 15.0, 20.0]),
        "group": REGION[tz],
    }
    if i % 3 == 1:
        start, end = rng.choice([("08:00", "18:00"), ("09:00", "17:00"), ("07:00", "19:00")])
        days = ["mon", "tue", "wed", "thu", "fri"] + (["sat"] if rng.random() < 0.3 else [])
        b["schedule"] = {"timezone": tz, "hours": {d: [start, end] for d in days}}
    brokers.append(b)

print(json.dumps(brokers, indent=1))
