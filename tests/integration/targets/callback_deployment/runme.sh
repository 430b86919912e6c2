#!/usr/bin/env bash
# The deployment callback against the Retrace API emulator: an unchanged playbook run with the callback enabled is
# one deployment, completed when every host succeeded, cancelled when one failed; what Retrace recorded is exactly
# those two.
set -euxo pipefail
source ../setup_retrace_emulator/emulator.sh

start_emulator
export ANSIBLE_CALLBACKS_ENABLED=${ANSIBLE_CALLBACKS_ENABLED:+$ANSIBLE_CALLBACKS_ENABLED,}stackify.retrace.deployment
export RETRACE_APP_NAME=DemoApp RETRACE_ENVIRONMENT_NAME=Staging

ansible-playbook -i "$INVENTORY_PATH" site.yml -e retrace_version=3.0 "$@" 2>&1 | tee "$OUTPUT_DIR/completed.log"
grep -qx 'Retrace: deployment 3.0 of DemoApp to Staging completed' "$OUTPUT_DIR/completed.log"

rc=0
ansible-playbook -i "$INVENTORY_PATH" site.yml -e retrace_version=3.1 -e fail_release=true "$@" >"$OUTPUT_DIR/cancelled.log" 2>&1 || rc=$?
cat "$OUTPUT_DIR/cancelled.log"
[[ $rc == 2 ]]
grep -q '^Retrace: deployment 3.1 of DemoApp to Staging cancelled' "$OUTPUT_DIR/cancelled.log"

expect_deployments ansible-callback "DemoApp/Staging/3.0=completed;Name=3.0" "DemoApp/Staging/3.1=cancelled;Name=3.1"
