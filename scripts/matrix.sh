# shellcheck shell=bash
# The support matrix, in this one place: every cell `make test` and CI run (sourced by scripts/bootstrap,
# scripts/test and scripts/test-matrix). ansible-core's version is the pin in the cell's requirements file.
#
# Declared and tested: ansible-core 2.19, 2.20 and 2.21. Upstream maintains 2.20 and 2.21; 2.19 is kept because
# it is the newest ansible-core that runs on Python 3.11 (the system Python of Debian 12 / RHEL 9-based
# controllers and of many execution environments) and the first with the data-tagging templating 2.20 and 2.21
# share, so 2.19-2.21 is one contiguous range. The newest cell is .venv: the full suite, sanity and lint;
# every other cell gets its own venv under build/ and runs the Ansible-facing tests and ansible-test sanity.
#
#     cell         Python  requirements
MATRIX_CELLS=(
    "newest        3.13    requirements-dev.txt"
    "2.21-py3.12   3.12    requirements-ansible-2.21.txt"
    "2.20-py3.13   3.13    requirements-ansible-2.20.txt"
    "2.20-py3.12   3.12    requirements-ansible-2.20.txt"
    "2.19-py3.11   3.11    requirements-ansible-2.19.txt"
)

# The cells after the newest, in table order.
matrix_other_cells() {
    local row
    for row in "${MATRIX_CELLS[@]:1}"; do
        printf '%s\n' "${row%% *}"
    done
}

# matrix_cell NAME -> sets CELL_PYTHON (X.Y), CELL_REQUIREMENTS (relative to the checkout), CELL_VENV,
# CELL_CORE (the ansible-core pin); returns 1 for an unknown cell.
# shellcheck disable=SC2034  # the CELL_* variables are this function's output
matrix_cell() {
    local row name python requirements
    for row in "${MATRIX_CELLS[@]}"; do
        read -r name python requirements <<<"$row"
        [[ $name == "$1" ]] || continue
        CELL_PYTHON=$python
        CELL_REQUIREMENTS=$requirements
        if [[ $name == newest ]]; then CELL_VENV=.venv; else CELL_VENV=build/venv-$name; fi
        CELL_CORE=$(sed -n 's/^ansible-core==//p' "$MATRIX_ROOT/$requirements")
        return 0
    done
    return 1
}

# matrix_json -> every cell, newest first, as one line of JSON for CI's job matrix (.github/workflows/ci.yml):
# [{"cell": "newest", "python": "3.13", "ansible_core": "2.21.5", "requirements": "requirements-dev.txt"}, ...]
matrix_json() {
    local row name python requirements separator=''
    printf '['
    for row in "${MATRIX_CELLS[@]}"; do
        read -r name python requirements <<<"$row"
        matrix_cell "$name"
        printf '%s{"cell": "%s", "python": "%s", "ansible_core": "%s", "requirements": "%s"}' \
            "$separator" "$name" "$python" "$CELL_CORE" "$requirements"
        separator=', '
    done
    printf ']\n'
}

MATRIX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
