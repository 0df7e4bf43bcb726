//! `INSERT INTO t SELECT ...`: weft computes the rows, Postgres writes
//! them.
//!
//! Postgres 15 never plans workers for a query that writes, because the
//! leader would write while in parallel mode. weft's run enters and leaves
//! parallel mode within its first row, before the leader's ModifyTable
//! writes any, so the rows an INSERT writes can come from weft: the stock
//! plan's ModifyTable stays (triggers, constraints, indexes, RETURNING,
//! all as Postgres runs them), and only its source, the plan under it, is
//! replaced by a Custom Scan (Weft) of the INSERT read as a SELECT: its
//! target list as Postgres's planner expands it (`expand_insert_targetlist`:
//! one column per attribute of the table, in order, NULL where the INSERT
//! names none and the column has no default, a NULL integer for a dropped
//! one), over its SELECT.

use pgrx::pg_sys::{self, NodeTag};

use crate::hook::refusal::Refusal;
use crate::hook::translate::rt_fetch;
use crate::nodes::{cast, list};

/// Whether `q` is an INSERT weft may compute the rows of: rows from one
/// SELECT (not VALUES), no ON CONFLICT, no data-modifying WITH.
///
/// # Safety
/// `q` is a valid Query.
pub unsafe fn insert_of_select(q: &pg_sys::Query) -> Result<(), Refusal> {
    if q.commandType != pg_sys::CmdType::CMD_INSERT {
        return Err(Refusal::NotEligible("not a SELECT"));
    }
    if !q.onConflict.is_null() || q.hasModifyingCTE {
        return Err(Refusal::NotEligible(
            "an INSERT with ON CONFLICT or a data-modifying WITH",
        ));
    }
    // SAFETY: per the caller; its join tree and range table.
    let source = unsafe {
        let from = list::<pg_sys::Node>((*q.jointree).fromlist);
        match from[..] {
            [only] => cast::<pg_sys::RangeTblRef>(only, NodeTag::T_RangeTblRef)
                .and_then(|r| rt_fetch(std::ptr::from_ref(q).cast_mut(), (*r).rtindex).ok()),
            _ => None,
        }
    };
    match source {
        // SAFETY: a range table entry.
        Some(rte) if unsafe { (*rte).rtekind } == pg_sys::RTEKind::RTE_SUBQUERY => Ok(()),
        _ => Err(Refusal::NotEligible("an INSERT of VALUES or of no query")),
    }
}

/// The SELECT an INSERT accepted by [`insert_of_select`] reads.
///
/// # Safety
/// `q` is a valid Query that [`insert_of_select`] accepted.
pub unsafe fn source(q: &pg_sys::Query) -> *mut pg_sys::Query {
    // SAFETY: per the caller: one RangeTblRef to a subquery entry.
    unsafe {
        let from = list::<pg_sys::RangeTblRef>((*q.jointree).fromlist);
        let rte = rt_fetch(std::ptr::from_ref(q).cast_mut(), (*from[0]).rtindex).expect("the INSERT's subquery");
        (*rte).subquery
    }
}

/// The columns of an INSERT's rows that the leader computes as each row
/// is written, not weft: those that read no column of the SELECT (a
/// default, `nextval` of a serial column's sequence, a constant), each a
/// planned expression by its position in the row.
pub struct LeaderColumns(Vec<(usize, *mut pg_sys::Expr)>);

/// `q`, an INSERT of a SELECT ([`insert_of_select`]), turned into the
/// SELECT of the rows its plan's ModifyTable receives; the columns it
/// leaves to the leader stand as NULLs of their types there.
///
/// # Safety
/// `q` is weft's own copy of a valid INSERT Query (it is changed in
/// place), on the backend thread; the target table is locked.
pub unsafe fn as_select(q: *mut pg_sys::Query) -> Result<LeaderColumns, Refusal> {
    // SAFETY: per the caller.
    unsafe {
        let target = rt_fetch(q, (*q).resultRelation)?;
        let rel = pg_sys::table_open((*target).relid, pg_sys::NoLock as i32);
        let expanded = expanded_targets(q, rel);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        (*q).targetList = expanded?;
        let mut leader = Vec::new();
        for (i, entry) in list::<pg_sys::TargetEntry>((*q).targetList).into_iter().enumerate() {
            let expr = (*entry).expr.cast::<pg_sys::Node>();
            if !pg_sys::contain_var_clause(expr) && !pg_sys::contain_subplans(expr) {
                leader.push((
                    i,
                    pg_sys::expression_planner(pg_sys::copyObjectImpl(expr.cast()).cast()),
                ));
                (*entry).expr = pg_sys::makeNullConst(
                    pg_sys::exprType(expr),
                    pg_sys::exprTypmod(expr),
                    pg_sys::exprCollation(expr),
                )
                .cast();
            }
        }
        (*q).commandType = pg_sys::CmdType::CMD_SELECT;
        (*q).resultRelation = 0;
        (*q).returningList = std::ptr::null_mut();
        Ok(LeaderColumns(leader))
    }
}

/// Puts the leader's columns into `scan`'s target list (the rows of
/// [`as_select`]'s query), where the scan's projection computes them
/// for each row it returns, outside weft's run: a dropped column's NULL
/// as the constant the executor requires (`ExecCheckPlanOutput`).
///
/// # Safety
/// `scan` is the plan made of the query `columns` came with, on the
/// backend thread.
pub unsafe fn computed_by_leader(columns: &LeaderColumns, scan: *mut pg_sys::Plan) {
    // SAFETY: per the caller; the target list has one entry per column.
    unsafe {
        let targets = list::<pg_sys::TargetEntry>((*scan).targetlist);
        for &(i, expr) in &columns.0 {
            if let Some(&target) = targets.get(i) {
                (*target).expr = expr;
            }
        }
    }
}

/// The INSERT's target list with one entry per attribute of `rel`, as
/// the planner's `expand_insert_targetlist` makes it.
///
/// # Safety
/// As [`as_select`]'s; `rel` is the open target table.
unsafe fn expanded_targets(q: *mut pg_sys::Query, rel: pg_sys::Relation) -> Result<*mut pg_sys::List, Refusal> {
    // SAFETY: per the caller; the descriptor's attributes and the
    // INSERT's target entries.
    unsafe {
        let given = list::<pg_sys::TargetEntry>((*q).targetList);
        let desc = (*rel).rd_att;
        let mut expanded = std::ptr::null_mut();
        for i in 0..(*desc).natts {
            let attribute = &*(*desc).attrs.as_ptr().add(i as usize);
            let attno = (i + 1) as i16;
            let expr: *mut pg_sys::Expr = match given.iter().find(|&&t| (*t).resno == attno) {
                Some(&entry) => (*entry).expr,
                None if attribute.attisdropped => pg_sys::makeNullConst(pg_sys::INT4OID, -1, pg_sys::InvalidOid).cast(),
                None => {
                    // A domain's NULL is checked against its constraints
                    // as the row is written: Postgres's to do.
                    if pg_sys::get_typtype(attribute.atttypid) as u8 == pg_sys::TYPTYPE_DOMAIN {
                        return Err(Refusal::shape(
                            "an INSERT leaving a column of a domain type to its NULL",
                        ));
                    }
                    pg_sys::makeNullConst(attribute.atttypid, attribute.atttypmod, attribute.attcollation).cast()
                }
            };
            let name = pg_sys::pstrdup(attribute.attname.data.as_ptr());
            expanded = pg_sys::lappend(expanded, pg_sys::makeTargetEntry(expr, attno, name, false).cast());
        }
        if given
            .iter()
            .any(|&t| (*t).resno < 1 || (*t).resno as i32 > (*desc).natts || (*t).resjunk)
        {
            return Err(Refusal::shape("an INSERT target list of other columns"));
        }
        Ok(expanded)
    }
}
