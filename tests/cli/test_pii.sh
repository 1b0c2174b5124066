#!/usr/bin/env bash
# `gemma pii` end to end through the real binary: the default listing, --json lines (type, severity, byte
# start and end), --redact output, standard input, --types, and errors: a missing file exits 1 naming it,
# usage errors exit 2. Usage: test_pii.sh BUILD_DIR
set -u
BUILD=${1:?usage: test_pii.sh BUILD_DIR}
GEMMA=$BUILD/gemma
[ -x "$GEMMA" ] || { echo "FAIL: $GEMMA not built"; exit 1; }

# In a sanitizer build a report must not pass for an expected exit code: give it its own.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}exitcode=86"

TMP=$(mktemp -d /tmp/gm_cli_pii.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail() {
    echo "FAIL: $*"
    echo "$pass passed, 1 failed"
    exit 1
}

# run WANT_RC CMD...: run CMD (30 s limit) with stdout in $TMP/out and stderr in $TMP/err.
run() {
    local want=$1
    shift
    timeout 30 "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
    local rc=$?
    [ "$rc" -eq "$want" ] || { sed 's/^/      /' "$TMP/err" | tail -n 5; fail "exit $rc (want $want): $*"; }
    if grep -qE 'Sanitizer|runtime error:' "$TMP/err"; then fail "sanitizer report: $*"; fi
    pass=$((pass + 1))
}
# same OUTPUT-FILE EXPECTED-TEXT
same() {
    if [ "$(cat "$1")" != "$2" ]; then
        echo "      got:"; sed 's/^/        /' "$1"; echo "      want:"; printf '%s\n' "$2" | sed 's/^/        /'
        fail "unexpected output ($3)"
    fi
    pass=$((pass + 1))
}

# Text with one of each kind (all fake: reserved domains, fiction phone ranges, test cards, ISO example IBAN,
# documentation IP ranges); "é" before the first finding checks that offsets are bytes.
printf 'Café: write to ana.lopez@example.com or call +44 20 7946 0958.\nCard 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 123-45-6789.\nHosts 192.0.2.10 and 2001:db8::7; key AKIAIOSFODNN7EXAMPLE.\nNot PII: version 1.2.3.4.5, 2024-01-05, 4111 1111 1111 1112.\n' >"$TMP/a.txt"

run 0 "$GEMMA" pii --redact "$TMP/a.txt"
same "$TMP/out" 'Café: write to [EMAIL] or call [PHONE].
Card [CARD], IBAN [IBAN], SSN [NATIONAL_ID].
Hosts [IPV4] and [IPV6]; key [API_KEY].
Not PII: version 1.2.3.4.5, 2024-01-05, 4111 1111 1111 1112.' "--redact"

run 0 "$GEMMA" pii --json "$TMP/a.txt"
F=$(printf '%s' "$TMP/a.txt")
same "$TMP/out" "{\"file\": \"$F\", \"type\": \"EMAIL\", \"severity\": \"personal\", \"start\": 16, \"end\": 37, \"rule\": \"email\"}
{\"file\": \"$F\", \"type\": \"PHONE\", \"severity\": \"personal\", \"start\": 46, \"end\": 62, \"rule\": \"phone_intl\"}
{\"file\": \"$F\", \"type\": \"CARD\", \"severity\": \"sensitive\", \"start\": 69, \"end\": 88, \"rule\": \"visa\"}
{\"file\": \"$F\", \"type\": \"IBAN\", \"severity\": \"sensitive\", \"start\": 95, \"end\": 122, \"rule\": \"iban\"}
{\"file\": \"$F\", \"type\": \"NATIONAL_ID\", \"severity\": \"sensitive\", \"start\": 128, \"end\": 139, \"rule\": \"us_ssn\"}
{\"file\": \"$F\", \"type\": \"IPV4\", \"severity\": \"personal\", \"start\": 147, \"end\": 157, \"rule\": \"ipv4\"}
{\"file\": \"$F\", \"type\": \"IPV6\", \"severity\": \"personal\", \"start\": 162, \"end\": 173, \"rule\": \"ipv6\"}
{\"file\": \"$F\", \"type\": \"API_KEY\", \"severity\": \"sensitive\", \"start\": 179, \"end\": 199, \"rule\": \"aws_access_key\"}" "--json"

# The byte spans really cover the values (dd counts bytes, so a character offset would show here).
span() { dd if="$TMP/a.txt" bs=1 skip="$1" count=$(($2 - $1)) 2>/dev/null; }
[ "$(span 16 37)" = "ana.lopez@example.com" ] && [ "$(span 179 199)" = "AKIAIOSFODNN7EXAMPLE" ] ||
    fail "json offsets are not byte offsets: '$(span 16 37)' '$(span 179 199)'"
pass=$((pass + 1))

# Default listing: one line per finding and a summary line.
run 0 "$GEMMA" pii "$TMP/a.txt"
grep -qF "$TMP/a.txt:69-88 CARD sensitive visa" "$TMP/out" || fail "listing lacks the card line"
grep -qF "$TMP/a.txt: 8 findings (4 sensitive, 4 personal)" "$TMP/out" || fail "listing lacks the summary"
pass=$((pass + 1))

# Standard input, several files, --types, --skip-local-ip.
printf 'mail bo@example.org from 10.0.0.1\n' >"$TMP/b.txt"
run 0 bash -c "'$GEMMA' pii --redact - <'$TMP/b.txt'"
same "$TMP/out" 'mail [EMAIL] from [IPV4]' "stdin"
run 0 "$GEMMA" pii --json --types EMAIL "$TMP/a.txt" "$TMP/b.txt"
[ "$(grep -c '"EMAIL"' "$TMP/out")" = 2 ] && [ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "--types EMAIL over two files"
pass=$((pass + 1))
run 0 "$GEMMA" pii --redact --skip-local-ip "$TMP/b.txt"
same "$TMP/out" 'mail [EMAIL] from 10.0.0.1' "--skip-local-ip"
# Empty input and a text without findings.
: >"$TMP/empty.txt"
run 0 "$GEMMA" pii --json "$TMP/empty.txt"
same "$TMP/out" '' "empty file"
printf 'Once upon a time there was a cat.\n' >"$TMP/c.txt"
run 0 "$GEMMA" pii --redact "$TMP/c.txt"
same "$TMP/out" 'Once upon a time there was a cat.' "no findings"

# Errors: a missing file exits 1 and names it (later files still run); usage errors exit 2.
run 1 "$GEMMA" pii --json "$TMP/missing.txt"
grep -qF "$TMP/missing.txt" "$TMP/err" || fail "error does not name the missing file"
pass=$((pass + 1))
run 1 "$GEMMA" pii --redact "$TMP/missing.txt" "$TMP/b.txt"
same "$TMP/out" 'mail [EMAIL] from [IPV4]' "file after a missing one"
run 1 "$GEMMA" pii "$TMP"
run 2 "$GEMMA" pii
run 2 "$GEMMA" pii --json --redact "$TMP/a.txt"
run 2 "$GEMMA" pii --types NAME "$TMP/a.txt"
run 2 "$GEMMA" pii --types
run 2 "$GEMMA" pii --bogus "$TMP/a.txt"
run 0 "$GEMMA" pii --help

echo "$pass passed, 0 failed"
