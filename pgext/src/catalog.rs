//! What weft asks of the catalog and the backend's state before it plans.

use pgrx::pg_sys;

/// Whether this database's encoding is UTF8 (weft reads text as UTF-8).
pub fn utf8_database() -> bool {
    // SAFETY: a plain query of the backend's state.
    unsafe { pg_sys::GetDatabaseEncoding() == pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// The column sets (attribute numbers) of `relid` that no two of its rows
/// share: the keys of its unique indexes that Postgres enforces at every
/// row (valid, not deferred, without a predicate or expressions), over
/// columns that cannot be NULL (or whose NULLs are not distinct): a unique
/// index lets two rows share a NULL key otherwise.
///
/// # Safety
/// On the backend thread, with `relid` locked (the planner's lock).
pub unsafe fn unique_keys(relid: pg_sys::Oid) -> Vec<Vec<i16>> {
    let mut keys = Vec::new();
    // SAFETY: per the caller; the relation read under the caller's lock,
    // each index opened and locked as the planner locks them (its lock
    // kept to the transaction's end), their relcache entries read and
    // closed.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return keys;
        }
        let list = pg_sys::RelationGetIndexList(rel);
        for index_oid in crate::nodes::oid_list(list) {
            let index = pg_sys::index_open(index_oid, pg_sys::AccessShareLock as i32);
            let form = &*(*index).rd_index;
            let enforced = form.indisunique
                && form.indimmediate
                && form.indisvalid
                && pg_sys::heap_attisnull(
                    (*index).rd_indextuple,
                    pg_sys::Anum_pg_index_indpred as i32,
                    std::ptr::null_mut(),
                )
                && pg_sys::heap_attisnull(
                    (*index).rd_indextuple,
                    pg_sys::Anum_pg_index_indexprs as i32,
                    std::ptr::null_mut(),
                );
            if enforced {
                let columns = form.indkey.values.as_slice(form.indnkeyatts as usize).to_vec();
                let descriptor = &*(*rel).rd_att;
                let attributes = descriptor.attrs.as_slice(descriptor.natts as usize);
                let not_null = |attnum: &i16| {
                    usize::try_from(*attnum - 1)
                        .ok()
                        .and_then(|i| attributes.get(i))
                        .is_some_and(|a| a.attnotnull)
                };
                if form.indnullsnotdistinct || columns.iter().all(not_null) {
                    keys.push(columns);
                }
            }
            pg_sys::index_close(index, pg_sys::NoLock as i32);
        }
        pg_sys::RelationClose(rel);
    }
    keys
}

/// Whether `relid` may have inheritance children (`relhassubclass`, which
/// stays set after the last child goes: a yes may be stale, a no is not).
///
/// # Safety
/// On the backend thread, with `relid` locked (the planner's lock).
pub unsafe fn may_have_children(relid: pg_sys::Oid) -> bool {
    // SAFETY: per the caller; the relcache entry read and closed.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return true;
        }
        let children = (*(*rel).rd_rel).relhassubclass;
        pg_sys::RelationClose(rel);
        children
    }
}
