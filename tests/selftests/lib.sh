# SPDX-License-Identifier: GPL-2.0
# Helpers for the kselftests, sourced by each test.  A test is a bash
# script that runs in the guest, exits 0 (pass), 4 (skip) or anything else
# (fail), and explains a failure on stderr.  The runner clears dmesg before
# each test and fails it if dmesg then shows a kernel splat.

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

: "${BCH_ROOT:?run through tests/selftests/run}"
RS_KO="$BCH_ROOT/bcachefs_rs.ko"
MNT=/tmp/bch-mnt
mkdir -p "$MNT"

fail() { echo "FAIL: $*" >&2; exit $KSFT_FAIL; }
skip() { echo "SKIP: $*" >&2; exit $KSFT_SKIP; }
note() { echo "$*"; }   # the runner prefixes "# "

# Modules the Rust module needs from the kernel (crc32c, crc64).
rs_deps() { modprobe -q -d "$BCH_MODROOT" -a libcrc32c crc64 2>/dev/null || true; }
rs_load() { rs_deps; insmod "$RS_KO" || fail "insmod $RS_KO failed"; }
rs_unload() { ! rs_loaded || rmmod bcachefs_rs || fail "rmmod bcachefs_rs failed"; }
rs_loaded() { [ -d /sys/module/bcachefs_rs ]; }
c_load() { modprobe -d "$BCH_MODROOT" bcachefs || fail "modprobe bcachefs (C) failed"; }
c_unload() { ! c_loaded || modprobe -r -d "$BCH_MODROOT" bcachefs || fail "removing the C bcachefs module failed"; }
c_loaded() { [ -d /sys/module/bcachefs ]; }

# mount(2) directly, printing the errno name ("OK" on success), so a test
# can assert the exact error rather than mount(8)'s paraphrase of it.
sys_mount() { # dev dir fstype [options]
	/usr/bin/python3 - "$@" <<'PY'
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
dev, mnt, fstype = (a.encode() for a in sys.argv[1:4])
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
r = libc.mount(dev, mnt, fstype, 0, data)
print("OK" if r == 0 else errno.errorcode[ctypes.get_errno()])
PY
}

dev_sha() { sha256sum "$1" | cut -d' ' -f1; }

# The lines dmesg gained since the runner cleared it.
dmesg_text() { dmesg --notime 2>/dev/null || dmesg; }
