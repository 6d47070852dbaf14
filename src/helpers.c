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

/* kmem_cache_create() is a _Generic macro in 6.12. */
struct kmem_cache *bch_rs_kmem_cache_create(const char *name, unsigned int size,
					    void (*ctor)(void *))
{
	return kmem_cache_create(name, size, 0,
				 SLAB_RECLAIM_ACCOUNT | SLAB_ACCOUNT, ctor);
}

/* alloc_inode_sb() is a macro (allocation profiling hooks). */
struct inode *bch_rs_alloc_inode_sb(struct super_block *sb,
				    struct kmem_cache *cache)
{
	return alloc_inode_sb(sb, cache, GFP_NOFS);
}

/* sysfs_attr_init() is a macro: one static lockdep key for our attributes. */
void bch_rs_sysfs_attr_init(struct attribute *attr)
{
	sysfs_attr_init(attr);
}
