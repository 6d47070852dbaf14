// SPDX-License-Identifier: GPL-2.0
//! Mount options, parsed as `bch2_parse_mount_opts()` names them (to be written).
