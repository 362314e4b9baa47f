#!/bin/sh
# Runs every test binary given, under valgrind when VALGRIND=1, and prints one closing line:
# "tests: N passed, N failed, N skipped" (cmocka test counts). Exit status 1 if any failed.
passed=0; failed=0; skipped=0; failed_bins=""
log=$(mktemp)
for bin in "$@"; do
    if [ "${VALGRIND:-0}" = 1 ]; then
        valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            "$bin" >"$log" 2>&1
    else
        "$bin" >"$log" 2>&1
    fi
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ]; then
        [ -z "$f" ] && failed=$((failed + 1))   # crashed before cmocka could count
        failed_bins="$failed_bins $(basename "$bin")"
    fi
done
rm -f "$log"
[ -n "$failed_bins" ] && echo "failing test programs:$failed_bins"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ -z "$failed_bins" ]
