# SPDX-License-Identifier: GPL-2.0
# Mount options of the read-only mount, on the small volume: an unknown
# option gives EINVAL and a dmesg line naming it; "nochanges" without
# "ro" mounts read-only (C 6.12 ignores unknown options and mounts
# nochanges differently, so those two checks are bcachefs_rs's alone); "ro,norecovery", "ro,verbose" and
# "ro,degraded" are accepted and the volume reads back.  Nothing is
# written to the device.
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || skip "$TOOL missing: cargo build --release -p bcachefs-tools-rs"
small_volume
loop= mounted=
trap ro_cleanup EXIT
loop=$(loop_attach "$SMALL_IMG")
before=$(dev_sha "$loop")
want=$(grep '"path": "hard/h2"' "$SMALL_MAN" | sed 's/.*"sha256": "\([0-9a-f]*\)".*/\1/')
ro_load
# The skip (read path not merged) comes from a plain ro mount first.
ro_mount "$loop" "$MNT"
umount "$MNT"

dmesg -C
r=$(vfs_mount "$loop" "$MNT" "$(ro_opts frobnicate=3)")
if [ "$RO_IMPL" = rs ]; then
	[ "$r" = EINVAL ] || { [ "$r" = OK ] && umount "$MNT"; fail "unknown option frobnicate=3: $r, want EINVAL"; }
	dmesg_text | grep -q frobnicate || fail "no dmesg line naming the unknown option: $(dmesg_text | tail -n 3)"
	note "unknown option: EINVAL; $(dmesg_text | grep frobnicate | head -n 1)"
else
	[ "$r" = OK ] && umount "$MNT"
	note "(C 6.12 answers $r to an unknown option: the EINVAL check is bcachefs_rs's only)"
fi

if [ "$RO_IMPL" = rs ]; then
	# Without ro, nochanges mounts read-only (nothing may be written);
	# read-write mounts are 45-rw-basic's.
	r=$(vfs_mount "$loop" "$MNT" nochanges)
	[ "$r" = OK ] || fail "mount -o nochanges: $r, want success (read-only)"
	mounted=1
	grep -q " $MNT bcachefs ro[ ,]" /proc/mounts || fail "-o nochanges: not read-only in /proc/mounts"
	umount "$MNT"
	mounted=
	note "without ro, nochanges: mounted read-only"
fi

for o in norecovery verbose degraded norecovery,verbose,degraded; do
	r=$(vfs_mount "$loop" "$MNT" "$(ro_opts "$o")")
	[ "$r" = OK ] || fail "-o ro,$o: $r, want success: $(dmesg_text | tail -n 3)"
	mounted=1
	got=$(sha256sum "$MNT/hard/h2" | cut -d' ' -f1)
	grep -q " $MNT bcachefs ro[ ,]" /proc/mounts || fail "-o ro,$o: not read-only in /proc/mounts"
	umount "$MNT"
	mounted=
	[ "$got" = "$want" ] || fail "-o ro,$o: hard/h2 sha256 $got, want $want"
done
note "ro,norecovery ro,verbose ro,degraded accepted, data intact"
ro_unload
dev_unchanged "mount option checks" "$loop" "$before"
exit 0
