#!/usr/bin/env bash
# The deployment module against the Retrace API emulator: a deployment started then completed, another started then
# cancelled, and what Retrace recorded is exactly those two.
set -euxo pipefail
source ../setup_retrace_emulator/emulator.sh

start_emulator
ansible-playbook -i "$INVENTORY_PATH" deployment.yml "$@"
expect_deployments ansible-module "DemoApp/Production/1.0=completed;Name=1.0" "DemoApp/Staging/1.1=cancelled;Name=release 1.1"
