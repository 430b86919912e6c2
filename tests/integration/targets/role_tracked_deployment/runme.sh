#!/usr/bin/env bash
# The tracked_deployment role against the Retrace API emulator: a play whose tasks succeed completes its deployment;
# a play whose tasks fail cancels its own and still fails; a play deploying to two environments records one deployment
# each, and a failed host cancels only its own; what Retrace recorded is exactly those four.
set -euxo pipefail
source ../setup_retrace_emulator/emulator.sh

start_emulator
ansible-playbook -i "$INVENTORY_PATH" tracked.yml -e "output_dir=$OUTPUT_DIR" "$@"
test -f "$OUTPUT_DIR/release-2.0"  # the deployment's own tasks ran

rc=0
ansible-playbook -i "$INVENTORY_PATH" tracked.yml -e "output_dir=$OUTPUT_DIR" -e release=2.1 -e fail_release=true "$@" || rc=$?
[[ $rc == 2 ]]  # the play fails with the tasks' own error

rc=0
ansible-playbook -i environments.ini environments.yml -e "output_dir=$OUTPUT_DIR" -e '{"failing_hosts": ["prod2"]}' "$@" || rc=$?
[[ $rc == 2 ]]  # prod2 fails the play; stage1 and prod1 deployed
test -f "$OUTPUT_DIR/release-2.2"

expect_deployments ansible-module "DemoApp/Production/2.0=completed;Name=2.0" "DemoApp/Production/2.1=cancelled;Name=2.1" \
    "DemoApp/Staging/2.2=completed;Name=2.2" "DemoApp/Production/2.2=cancelled;Name=2.2"
