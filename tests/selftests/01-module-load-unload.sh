# SPDX-License-Identifier: GPL-2.0
# bcachefs_rs loads, creates /sys/fs/bcachefs, and unload removes it again.
. "$(dirname "$0")/lib.sh"
c_unload
rs_unload
[ ! -e /sys/fs/bcachefs ] || fail "/sys/fs/bcachefs exists before loading"
rs_load
rs_loaded || fail "/sys/module/bcachefs_rs missing after insmod"
[ -d /sys/fs/bcachefs ] || fail "/sys/fs/bcachefs missing after insmod"
dmesg_text | grep -q "bcachefs_rs: loaded: filesystem type bcachefs" ||
	fail "no load message in dmesg"
rmmod bcachefs_rs || fail "rmmod failed"
! rs_loaded || fail "module still loaded after rmmod"
[ ! -e /sys/fs/bcachefs ] || fail "/sys/fs/bcachefs left behind by rmmod"
# Twice, to catch state left behind by the first cycle.
rs_load
rmmod bcachefs_rs || fail "second rmmod failed"
[ ! -e /sys/fs/bcachefs ] || fail "/sys/fs/bcachefs left behind by second rmmod"
