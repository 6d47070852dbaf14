/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What bcachefs_rs needs from the kernel beyond 6.12's kernel::bindings.
 *
 * The module's own bindgen pass (see Kbuild) turns the allowlisted
 * declarations reachable from here into src/bindings.rs's generated half;
 * static inline functions are wrapped by bindgen's --wrap-static-fns into
 * bindings/wrap.c.  Macros, which bindgen cannot see, are wrapped by hand in
 * src/helpers.c and declared below.
 */
#ifndef _BCACHEFS_RS_H
#define _BCACHEFS_RS_H

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/crc32c.h>
#include <linux/dcache.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/fs_parser.h>
#include <linux/fiemap.h>
#include <linux/highmem.h>
#include <linux/kobject.h>
#include <linux/lz4.h>
#include <linux/mm.h>
#include <linux/mnt_idmapping.h>
#include <linux/pagemap.h>
#include <linux/posix_acl.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/statfs.h>
#include <linux/sysfs.h>
#include <linux/zlib.h>
#include <linux/timekeeping.h>
#include <linux/writeback.h>
#include <linux/xattr.h>
#include <linux/zstd.h>

/*
 * Macro constants, evaluated by clang so bindgen emits them as Rust
 * constants (the same trick as rust/bindings/bindings_helper.h).
 */
static const blk_mode_t BCH_RS_BLK_OPEN_READ = BLK_OPEN_READ;
static const blk_mode_t BCH_RS_BLK_OPEN_WRITE = BLK_OPEN_WRITE;
static const blk_opf_t BCH_RS_REQ_OP_READ = REQ_OP_READ;
static const blk_opf_t BCH_RS_REQ_OP_WRITE = REQ_OP_WRITE;
static const blk_opf_t BCH_RS_REQ_META = REQ_META;
static const blk_opf_t BCH_RS_REQ_SYNC = REQ_SYNC;
static const blk_opf_t BCH_RS_REQ_PREFLUSH = REQ_PREFLUSH;
static const blk_opf_t BCH_RS_REQ_FUA = REQ_FUA;
static const int BCH_RS_MAX_WBITS = MAX_WBITS;
static const int BCH_RS_Z_OK = Z_OK;
static const int BCH_RS_Z_STREAM_END = Z_STREAM_END;
static const int BCH_RS_Z_FINISH = Z_FINISH;
static const unsigned int BCH_RS_SB_RDONLY = SB_RDONLY;
static const unsigned int BCH_RS_SB_POSIXACL = SB_POSIXACL;
static const int BCH_RS_ACL_TYPE_ACCESS = ACL_TYPE_ACCESS;
static const int BCH_RS_ACL_TYPE_DEFAULT = ACL_TYPE_DEFAULT;
static const loff_t BCH_RS_MAX_LFS_FILESIZE = MAX_LFS_FILESIZE;
static const gfp_t BCH_RS_GFP_FS = __GFP_FS;
static const fgf_t BCH_RS_FGP_WRITEBEGIN = FGP_WRITEBEGIN;
/* readahead extended to the end of a checksummed extent: new folios only,
 * locked, never waiting for a lock (src/fs/inode.rs) */
static const fgf_t BCH_RS_FGP_RA_EXTEND = FGP_LOCK | FGP_CREAT | FGP_NOWAIT;
static const gfp_t BCH_RS_GFP_RA_EXTRA = __GFP_NORETRY | __GFP_NOWARN;

/* src/helpers.c: macros wrapped as functions */
struct page *bch_rs_virt_to_page(const void *addr);
unsigned long bch_rs_offset_in_page(const void *addr);
bool bch_rs_virt_addr_valid(const void *addr);
struct kmem_cache *bch_rs_kmem_cache_create(const char *name, unsigned int size,
					    void (*ctor)(void *));
struct inode *bch_rs_alloc_inode_sb(struct super_block *sb,
				    struct kmem_cache *cache);
void bch_rs_sysfs_attr_init(struct attribute *attr);
void bch_rs_new_owner(struct mnt_idmap *idmap, struct inode *dir,
		      umode_t *mode, u32 *uid, u32 *gid);
void bch_rs_iattr_ids(struct mnt_idmap *idmap, struct inode *inode,
		      const struct iattr *attr, u32 *uid, u32 *gid,
		      umode_t *mode);
struct bch_rs_timer;
struct bch_rs_timer *bch_rs_timer_start(void (*fn)(void *), void *data,
					unsigned int ms);
void bch_rs_timer_stop(struct bch_rs_timer *t);
unsigned long bch_rs_i_uid(const struct inode *inode);
unsigned long bch_rs_i_gid(const struct inode *inode);
void bch_rs_current_fs_ids(u32 *uid, u32 *gid);
struct folio *bch_rs_vmf_folio(struct vm_fault *vmf);

/* POSIX ACLs (src/fs/acl.rs): struct posix_acl as a flat list of entries */
struct bch_rs_acl_entry {
	u16	tag;
	u16	perm;
	u32	id;
};
struct posix_acl *bch_rs_acl_new(const struct bch_rs_acl_entry *e,
				 unsigned int nr);
unsigned int bch_rs_acl_count(const struct posix_acl *acl);
void bch_rs_acl_entry_get(const struct posix_acl *acl, unsigned int i,
			  struct bch_rs_acl_entry *out);
void bch_rs_acl_release(struct posix_acl *acl);
bool bch_rs_acl_clear_sgid(struct mnt_idmap *idmap, struct inode *inode);

/* errors=panic (src/platform/kernel.rs): panic() is variadic */
void __noreturn bch_rs_panic(const char *msg);

#endif /* _BCACHEFS_RS_H */
