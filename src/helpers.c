// SPDX-License-Identifier: GPL-2.0
/*
 * Macros bcachefs_rs needs as callable functions.  Static inline functions
 * are wrapped by bindgen (--wrap-static-fns); only what bindgen cannot see
 * lives here.
 */
#include "../include/bcachefs_rs.h"

struct page *bch_rs_virt_to_page(const void *addr)
{
	return virt_to_page(addr);
}

unsigned long bch_rs_offset_in_page(const void *addr)
{
	return offset_in_page(addr);
}

bool bch_rs_virt_addr_valid(const void *addr)
{
	return virt_addr_valid(addr);
}
