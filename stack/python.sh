#!/usr/bin/env bash
# `make install`'s first step: make sure the interpreter ($1) and its venv module exist.
source "$(dirname "$0")/lib.sh"
ensure_python_venv "${1:-python3.11}"
