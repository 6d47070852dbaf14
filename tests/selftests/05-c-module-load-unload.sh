# SPDX-License-Identifier: GPL-2.0
# The C bcachefs module from the same kernel (the oracle and benchmark
# peer) loads and unloads; bcachefs_rs refuses to load beside it, cleanly.
. "$(dirname "$0")/lib.sh"
rs_unload
c_unload
c_load
c_loaded || fail "C module not loaded after modprobe"
grep -qw bcachefs /proc/filesystems || fail "C module did not register bcachefs"
[ -d /sys/fs/bcachefs ] || fail "C module did not create /sys/fs/bcachefs"
rs_deps
if insmod "$RS_KO" 2>/dev/null; then
	rmmod bcachefs_rs
	fail "bcachefs_rs loaded while the C module owns the name bcachefs"
fi
dmesg_text | grep -q "bcachefs_rs: cannot" || fail "no message saying why bcachefs_rs did not load"
c_unload
! c_loaded || fail "C module still loaded"
grep -qw bcachefs /proc/filesystems && fail "bcachefs still registered after removing the C module"
[ ! -e /sys/fs/bcachefs ] || fail "/sys/fs/bcachefs left behind by the C module"
exit 0
