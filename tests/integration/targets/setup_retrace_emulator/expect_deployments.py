"""Check what the Retrace API emulator recorded: exactly the deployments named, each started once and ended once by
the entry point named, with the fields named, and every request accepted without a warning.

Usage: expect_deployments.py URL ENTRY_POINT APP/ENVIRONMENT/VERSION=completed|cancelled[;Field=value...] ...
  e.g. "DemoApp/Staging/1.1=cancelled;Name=release 1.1"  (Field: Name, Branch, Commit, Uri as Retrace holds them)
"""

import json
import sys
import urllib.request

END_ACTION = {"completed": "complete", "cancelled": "cancel"}


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as answer:  # the emulator on loopback
        return json.load(answer)


def main(url, entry_point, *expected):
    wanted, fields = {}, {}
    for item in expected:
        name, rest = item.split("=", 1)
        state, *named = rest.split(";")
        key = tuple(name.split("/", 2))
        wanted[key] = state
        fields[key] = dict(field.split("=", 1) for field in named)
    deployments = fetch(f"{url}/_emulator/deployments")
    journal = fetch(f"{url}/_emulator/journal")
    problems = []
    found = {(record["AppName"], record["EnvironmentName"], record["Version"]): record for record in deployments}
    if set(found) != set(wanted):
        problems.append(f"recorded {sorted(found)}, expected {sorted(wanted)}")
    for key, state in wanted.items():
        record = found.get(key)
        if record is None:
            continue
        actions = [step["action"] for step in record["history"]]
        if record["state"] != state or actions != ["start", END_ACTION[state]]:
            problems.append(f"{'/'.join(key)}: {record['state']} after {actions}, expected {state} after "
                            f"{['start', END_ACTION[state]]}")
        for field, value in fields[key].items():
            if record.get(field) != value:
                problems.append(f"{'/'.join(key)}: {field} recorded as {record.get(field)!r}, expected {value!r}")
        agents = {step.get("agent") or "" for step in record["history"]}
        if not all(f"({entry_point};" in agent for agent in agents):
            problems.append(f"{'/'.join(key)}: sent by {sorted(agents)}, expected the {entry_point} entry point")
    for entry in journal:
        if entry["status"] != 202 or entry["warnings"]:
            problems.append(f"request {entry['seq']} {entry['action']}: status {entry['status']}, "
                            f"warnings {entry['warnings']}")
    if problems:
        print("expect_deployments: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"expect_deployments: {len(wanted)} deployment(s) recorded as expected, by {entry_point}: "
          + ", ".join(f"{'/'.join(key)} {state}" for key, state in sorted(wanted.items())))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
