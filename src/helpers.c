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

/*
 * The owner of a new inode in @dir (inode_init_owner() as numbers in the
 * initial namespace): the caller's fsuid through the mount's idmap; the
 * directory's group when it is setgid (and a new directory inherits the
 * bit), else the caller's fsgid.
 */
void bch_rs_new_owner(struct mnt_idmap *idmap, struct inode *dir,
		      umode_t *mode, u32 *uid, u32 *gid)
{
	kuid_t u = mapped_fsuid(idmap, i_user_ns(dir));
	kgid_t g;

	if (dir->i_mode & S_ISGID) {
		g = dir->i_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	} else {
		g = mapped_fsgid(idmap, i_user_ns(dir));
	}
	*uid = from_kuid(&init_user_ns, u);
	*gid = from_kgid(&init_user_ns, g);
}

/*
 * What setattr_copy() would store from @attr, as numbers in the initial
 * namespace: the owner and group through the mount's idmap, the mode with
 * S_ISGID dropped when the caller may not keep it.  Fields @attr does not
 * set are left alone.
 */
void bch_rs_iattr_ids(struct mnt_idmap *idmap, struct inode *inode,
		      const struct iattr *attr, u32 *uid, u32 *gid,
		      umode_t *mode)
{
	unsigned int v = attr->ia_valid;

	if (v & ATTR_UID)
		*uid = from_kuid(&init_user_ns,
				 from_vfsuid(idmap, i_user_ns(inode), attr->ia_vfsuid));
	if (v & ATTR_GID)
		*gid = from_kgid(&init_user_ns,
				 from_vfsgid(idmap, i_user_ns(inode), attr->ia_vfsgid));
	if (v & ATTR_MODE) {
		umode_t m = attr->ia_mode;
		vfsgid_t g = (v & ATTR_GID) ? attr->ia_vfsgid :
			i_gid_into_vfsgid(idmap, inode);

		if (!in_group_or_capable(idmap, inode, g))
			m &= ~S_ISGID;
		*mode = m;
	}
}

/* i_uid_read()/i_gid_read() in the initial namespace. */
unsigned long bch_rs_i_uid(const struct inode *inode)
{
	return from_kuid(&init_user_ns, inode->i_uid);
}

unsigned long bch_rs_i_gid(const struct inode *inode)
{
	return from_kgid(&init_user_ns, inode->i_gid);
}

/* page_folio() (a macro) of the page a fault is about. */
struct folio *bch_rs_vmf_folio(struct vm_fault *vmf)
{
	return page_folio(vmf->page);
}

/* current_fsuid()/current_fsgid() (macros) in the initial namespace. */
void bch_rs_current_fs_ids(u32 *uid, u32 *gid)
{
	*uid = from_kuid(&init_user_ns, current_fsuid());
	*gid = from_kgid(&init_user_ns, current_fsgid());
}

/*
 * A periodic work item (the journal's delayed write, bch2_journal_do_work()
 * from c->journal.write_work in C): @fn(@data) every @ms milliseconds on
 * system_unbound_wq until bch_rs_timer_stop(), which waits for a running
 * call.
 */
struct bch_rs_timer {
	struct delayed_work	dw;
	void			(*fn)(void *);
	void			*data;
	unsigned long		period;
	bool			stopping;
};

static void bch_rs_timer_work(struct work_struct *w)
{
	struct bch_rs_timer *t =
		container_of(to_delayed_work(w), struct bch_rs_timer, dw);

	t->fn(t->data);
	if (!READ_ONCE(t->stopping))
		queue_delayed_work(system_unbound_wq, &t->dw, t->period);
}

struct bch_rs_timer *bch_rs_timer_start(void (*fn)(void *), void *data,
					unsigned int ms)
{
	struct bch_rs_timer *t = kzalloc(sizeof(*t), GFP_KERNEL);

	if (!t)
		return NULL;
	INIT_DELAYED_WORK(&t->dw, bch_rs_timer_work);
	t->fn = fn;
	t->data = data;
	t->period = max(1UL, msecs_to_jiffies(ms));
	queue_delayed_work(system_unbound_wq, &t->dw, t->period);
	return t;
}

void bch_rs_timer_stop(struct bch_rs_timer *t)
{
	if (!t)
		return;
	WRITE_ONCE(t->stopping, true);
	cancel_delayed_work_sync(&t->dw);
	kfree(t);
}

/*
 * POSIX ACLs.  struct posix_acl_entry keeps its id as a kuid_t or kgid_t
 * by tag; these move entries between it and struct bch_rs_acl_entry (ids
 * in the initial namespace, as acl.c stores them).
 */
struct posix_acl *bch_rs_acl_new(const struct bch_rs_acl_entry *e,
				 unsigned int nr)
{
	struct posix_acl *acl = posix_acl_alloc(nr, GFP_KERNEL);
	unsigned int i;

	if (!acl)
		return NULL;
	for (i = 0; i < nr; i++) {
		struct posix_acl_entry *pe = &acl->a_entries[i];

		pe->e_tag = e[i].tag;
		pe->e_perm = e[i].perm;
		if (e[i].tag == ACL_USER)
			pe->e_uid = make_kuid(&init_user_ns, e[i].id);
		else if (e[i].tag == ACL_GROUP)
			pe->e_gid = make_kgid(&init_user_ns, e[i].id);
	}
	return acl;
}

unsigned int bch_rs_acl_count(const struct posix_acl *acl)
{
	return acl->a_count;
}

void bch_rs_acl_entry_get(const struct posix_acl *acl, unsigned int i,
			  struct bch_rs_acl_entry *out)
{
	const struct posix_acl_entry *pe = &acl->a_entries[i];

	out->tag = pe->e_tag;
	out->perm = pe->e_perm;
	if (pe->e_tag == ACL_USER)
		out->id = from_kuid(&init_user_ns, pe->e_uid);
	else if (pe->e_tag == ACL_GROUP)
		out->id = from_kgid(&init_user_ns, pe->e_gid);
	else
		out->id = ACL_UNDEFINED_ID;
}

/* posix_acl_release() is static inline and frees through RCU. */
void bch_rs_acl_release(struct posix_acl *acl)
{
	posix_acl_release(acl);
}

/*
 * posix_acl_update_mode()'s S_ISGID rule: dropped unless the caller is in
 * the file's group (through the mount's idmap) or has CAP_FSETID over it.
 */
bool bch_rs_acl_clear_sgid(struct mnt_idmap *idmap, struct inode *inode)
{
	return !vfsgid_in_group_p(i_gid_into_vfsgid(idmap, inode)) &&
	       !capable_wrt_inode_uidgid(idmap, inode, CAP_FSETID);
}

/* panic() with a fixed message, for errors=panic. */
void __noreturn bch_rs_panic(const char *msg)
{
	panic("%s\n", msg);
}
