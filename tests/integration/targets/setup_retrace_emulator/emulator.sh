# shellcheck shell=bash
# Sourced by the runme.sh of each target that records deployments (aliases: needs/target/setup_retrace_emulator).
#
#   start_emulator          start the collection's Retrace API emulator (python -m retrace_emulator) on a free
#                           loopback port with its demo account; returns once it listens, exports RETRACE_API_URL
#                           and RETRACE_API_KEY for the entry point under test, and stops it when runme.sh exits
#   expect_deployments ...  what the emulator recorded is exactly the deployments named (expect_deployments.py)

SETUP_RETRACE_EMULATOR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The collection under test holds the emulator at its root: ansible-test puts its ansible_collections tree on
# ANSIBLE_COLLECTIONS_PATH.
retrace_collection_root() {
    local entry
    local -a entries
    IFS=: read -r -a entries <<<"${ANSIBLE_COLLECTIONS_PATH:-}"
    for entry in "${entries[@]}"; do
        if [[ -d $entry/ansible_collections/stackify/retrace/retrace_emulator ]]; then
            printf '%s\n' "$entry/ansible_collections/stackify/retrace"
            return 0
        fi
    done
    echo "setup_retrace_emulator: no ansible_collections/stackify/retrace/retrace_emulator on ANSIBLE_COLLECTIONS_PATH" >&2
    return 1
}

start_emulator() {
    local root line
    root=$(retrace_collection_root)
    # The first line the emulator prints names its URL: reading it waits exactly until it listens.
    exec {RETRACE_EMULATOR_FD}< <(cd "$root" && exec python -m retrace_emulator --port 0 --quiet)
    RETRACE_EMULATOR_PID=$!
    trap stop_emulator EXIT
    if ! read -r -t 30 -u "$RETRACE_EMULATOR_FD" line || [[ $line != *' listening on http://'* ]]; then
        echo "setup_retrace_emulator: the emulator did not start (first line: ${line:-none})" >&2
        return 1
    fi
    export RETRACE_API_URL=${line##* }
    export RETRACE_API_KEY=emulator-demo-key  # the emulator's demo account: DemoApp, in Production and Staging
    echo "setup_retrace_emulator: Retrace API emulator at $RETRACE_API_URL"
}

stop_emulator() {
    [[ -n ${RETRACE_EMULATOR_PID:-} ]] || return 0
    kill "$RETRACE_EMULATOR_PID" 2>/dev/null || true
    wait "$RETRACE_EMULATOR_PID" 2>/dev/null || true
    RETRACE_EMULATOR_PID=
}

expect_deployments() {
    python "$SETUP_RETRACE_EMULATOR/expect_deployments.py" "$RETRACE_API_URL" "$@"
}
