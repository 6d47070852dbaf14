# SPDX-License-Identifier: GPL-2.0
# Six locks and the gc_pos seqcount hold up under stress on kernel threads,
# with the kernel's lock validator watching: /sys/module/bcachefs_rs/
# six_lock_test runs the workload of src/sync/stress.rs (4 threads mixing
# every six lock operation on 4 locks, checking exclusion, sequence numbers,
# relock, hold counts and gc_pos) and reports KTAP in the kernel log.
. "$(dirname "$0")/lib.sh"
secs=${BCH_SIX_STRESS_SECS:-10}
trigger=/sys/module/bcachefs_rs/six_lock_test
c_unload
rs_unload
rs_load
[ -e "$trigger" ] || fail "$trigger missing after insmod"

# The validator is on in the test kernel; without it the run still checks
# the invariants, and says so.
stats=/proc/lockdep_stats
validator=0
if [ -r "$stats" ]; then
	grep -Eq 'debug_locks: +1' "$stats" || skip "lock validator already off before the test"
	validator=1
else
	note "kernel without the lock validator: invariants only"
fi

note "running the six lock stress for ${secs}s"
echo "$secs" > "$trigger"
rc=$?
ktap=$(dmesg_text | sed -n 's/^.*six_lock_test: //p')
[ -n "$ktap" ] || fail "no six_lock_test report in the kernel log"
# The module's KTAP, as this test's diagnostics.
printf '%s\n' "$ktap"
[ "$rc" -eq 0 ] || fail "writing $trigger failed"
grep -q '^# pass$' <<<"$ktap" || fail "six_lock_test did not pass"
! grep -q '^not ok' <<<"$ktap" || fail "a six_lock_test subtest failed"

if [ "$validator" = 1 ]; then
	# The validator saw the six locks (one class per lock of the workload)
	# and found nothing to complain about (a report turns it off).
	for i in 0 1 2 3; do
		grep -q "six_stress_$i" /proc/lockdep ||
			fail "lock class six_stress_$i unknown to the validator"
	done
	grep -Eq 'debug_locks: +1' "$stats" || fail "the lock validator turned itself off"
fi
rs_unload
