#!/bin/sh
# End-to-end checks of the irpkit CLI, as a user runs it: `test_cli.sh <irpkit> <check>`.
set -u
irpkit=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() { echo "FAIL: $1"; cat "$out"; exit 1; }
expect() { grep -q -- "$1" "$out" || fail "missing: $1"; }
case $2 in
demo)
    "$irpkit" demo >"$out" 2>&1 || fail "irpkit demo exited non-zero"
    for step in "CREATE   IRP" "READ     IRP" "CLEANUP  IRP" "CANCEL   IRP" "CLOSE    IRP" \
                "STATUS_CANCELLED" "verifier findings 0" "leaked: IRPs 0, handles 0, file objects 0" \
                "<- dispatch routine's IoStartPacket, device idle" \
                "<- IoStartNextPacket from the device's DPC" \
                "<- a cancel routine called IoStartNextPacket"; do
        expect "$step"
    done ;;
demo-as-written)
    "$irpkit" demo --as-written --delay-ms 5 >"$out" 2>&1
    [ $? -eq 1 ] || fail "the as-written sample must exit 1 (verifier findings)"
    expect "0xC4" ;;
explore-mutant)
    "$irpkit" explore r1-mutant >"$out" 2>&1
    [ $? -eq 1 ] || fail "exploring r1-mutant must find a failure (exit 1)"
    expect "schedule: irpk1:"
    sched=$(sed -n 's/^schedule: //p' "$out" | head -1)
    "$irpkit" explore --replay "$sched" r1-mutant >"$out" 2>&1
    [ $? -eq 1 ] || fail "replaying the counterexample must reproduce the failure" ;;
explore-sample)
    "$irpkit" explore --bound 1 sample >"$out" 2>&1 || fail "the corrected sample must have no failure"
    expect "no failure within bound 1" ;;
explore-list)
    "$irpkit" explore --list >"$out" 2>&1 || fail "irpkit explore --list exited non-zero"
    for name in sample sample-as-written sample-user sample-user-as-written csq csq-context csq-startio r1-mutant; do
        grep -q "^  $name " "$out" || fail "missing from --list: $name"
    done ;;
explore-csq-startio)
    "$irpkit" explore --bound 0 csq-startio >"$out" 2>&1 || fail "csq-startio must have no failure"
    expect "no failure within bound 0"
    expect "exhaustive"
    "$irpkit" explore --strategy random --max-executions 300 csq-startio >"$out" 2>&1 ||
        fail "csq-startio must have no failure (random)"
    expect "executions: 300," ;;
explore-user)
    "$irpkit" explore --bound 0 sample-user >"$out" 2>&1 || fail "sample-user must have no failure"
    expect "no failure within bound 0"
    "$irpkit" explore sample-user-as-written >"$out" 2>&1
    [ $? -eq 1 ] || fail "sample-user-as-written must give a counterexample (exit 1)"
    expect "FAILURE: deadlock"
    expect "reader-2 parked in KeWait reader-2's read event"
    sched=$(sed -n 's/^schedule: //p' "$out" | head -1)
    "$irpkit" explore --replay "$sched" sample-user-as-written >"$out" 2>&1
    [ $? -eq 1 ] || fail "replaying the counterexample must reproduce it"
    expect "reader-2 parked in KeWait reader-2's read event" ;;
explore-load)
    buggy=$3 fixed=$4
    "$irpkit" explore --load "$buggy" my-driver >"$out" 2>&1
    [ $? -eq 1 ] || fail "the buggy driver must give a counterexample (exit 1)"
    expect "MULTIPLE_IRP_COMPLETE_REQUESTS"
    sched=$(sed -n 's/^schedule: //p' "$out" | head -1)
    "$irpkit" explore --load "$buggy" --replay "$sched" my-driver >"$out" 2>&1
    [ $? -eq 1 ] || fail "replaying the counterexample must reproduce it"
    "$irpkit" explore --load "$fixed" --bound 2 my-driver-fixed >"$out" 2>&1 || fail "the fixed driver must pass"
    expect "no failure within bound 2"
    "$irpkit" explore --load /nonexistent.so my-driver >"$out" 2>&1
    [ $? -eq 2 ] || fail "an unloadable object must exit 2" ;;
bad-usage)
    "$irpkit" nonsense >"$out" 2>&1
    [ $? -eq 2 ] || fail "an unknown command must exit 2"
    "$irpkit" explore --bound >"$out" 2>&1
    [ $? -eq 2 ] || fail "a missing option value must exit 2" ;;
*) fail "unknown check $2" ;;
esac
echo "PASS: $2"
