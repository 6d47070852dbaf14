// SPDX-License-Identifier: GPL-2.0
//! (to be written)
