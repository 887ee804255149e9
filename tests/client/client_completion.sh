#!/usr/bin/env bash
# The bash completion of llamactl: commands, global and per-command options.
# usage: client_completion.sh COMPLETION-FILE
set -euo pipefail
source "$1"
fail=0
# complete WORDS... : the last word is the one being completed
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMPREPLY=()
    _llamactl
    printf '%s\n' "${COMPREPLY[@]}"
}
# (the offers are captured first: with pipefail, `complete_words | grep -q` fails whenever
# grep exits on its match before printf has written the rest: SIGPIPE)
expect() { # description, expected word, words...
    local what=$1 want=$2 offers
    shift 2
    offers=$(complete_words "$@")
    if ! grep -qx -- "$want" <<<"$offers"; then
        echo "FAIL: $what: '$want' not offered for: $*" >&2
        printf '%s\n' "$offers" >&2
        fail=1
    fi
}
expect_not() {
    local what=$1 bad=$2 offers
    shift 2
    offers=$(complete_words "$@")
    if grep -qx -- "$bad" <<<"$offers"; then
        echo "FAIL: $what: '$bad' offered for: $*" >&2
        fail=1
    fi
}
expect "command" generate llamactl gen
expect "command" tokenize llamactl to
expect "global option" --socket llamactl --so
expect "command after --socket" status llamactl --socket /tmp/x.sock st
expect "generate option" --temperature llamactl generate --temp
expect "generate option" --ids llamactl generate --i
expect "generate --json" --json llamactl --socket /tmp/x.sock generate hi --js
expect "chat option" --system llamactl chat --sys
expect_not "chat has no --json" --json llamactl chat --js
expect "status --json" --json llamactl status --
expect "tokenize option" --no-special llamactl tokenize --no
if ((fail)); then exit 1; fi
echo "client_completion: ok"
