//! Which Postgres functions may cross the bridge ([`bridgeable`]), and
//! which casts through text ([`castable_via_text`]).

use pgrx::pg_sys::{self, Oid};

/// Whether function `funcid` may be called through the bridge: parallel
/// safe, not volatile, not returning a set, written in C or built in
/// (a function in SQL or a procedural language runs queries of its own,
/// which stay with Postgres's executor), of no pseudo-type, not reading a
/// value's stored form, and executable by the current user (a function
/// the user may not execute stays with Postgres, which raises its own
/// permission error).
///
/// # Safety
/// On the backend thread.
pub unsafe fn bridgeable(funcid: Oid) -> Result<(), &'static str> {
    // SAFETY: per the caller; catalog lookups.
    unsafe {
        if pg_sys::func_volatile(funcid) as u8 == pg_sys::PROVOLATILE_VOLATILE {
            return Err("a volatile function");
        }
        if pg_sys::func_parallel(funcid) as u8 != pg_sys::PROPARALLEL_SAFE {
            return Err("a function that is not parallel safe");
        }
        if pg_sys::get_func_retset(funcid) {
            return Err("a set-returning function");
        }
        if !native(funcid) {
            return Err("a function in SQL or a procedural language");
        }
        // A polymorphic function (anyelement, anyenum, "any" ...) reads
        // its arguments' actual types from its call's expression, which
        // the bridge hands it (`call_expression`); other pseudo-types
        // (internal, record, cstring) stay with Postgres.
        let mut argtypes = std::ptr::null_mut();
        let mut nargs = 0;
        let result = pg_sys::get_func_signature(funcid, &mut argtypes, &mut nargs);
        let declared = std::slice::from_raw_parts(argtypes, usize::try_from(nargs).unwrap_or(0));
        if std::iter::once(&result)
            .chain(declared)
            .any(|&typid| pg_sys::get_typtype(typid) as u8 == pg_sys::TYPTYPE_PSEUDO && !polymorphic(typid))
        {
            return Err("a function of a pseudo-type");
        }
        // weft's values are not Postgres's stored form (weft detoasts and
        // rebuilds them).
        if matches!(
            funcid.to_u32(),
            pg_sys::F_PG_COLUMN_SIZE | pg_sys::F_PG_COLUMN_COMPRESSION
        ) {
            return Err("a function of a value's stored form");
        }
        if pg_sys::pg_proc_aclcheck(funcid, pg_sys::GetUserId(), pg_sys::ACL_EXECUTE as pg_sys::AclMode)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            return Err("a function the user may not execute");
        }
    }
    Ok(())
}

/// Whether pseudo-type `typid` stands for the actual type of a call's
/// argument or result, which Postgres resolves from the call's expression.
fn polymorphic(typid: Oid) -> bool {
    matches!(
        typid,
        pg_sys::ANYELEMENTOID
            | pg_sys::ANYARRAYOID
            | pg_sys::ANYNONARRAYOID
            | pg_sys::ANYENUMOID
            | pg_sys::ANYRANGEOID
            | pg_sys::ANYMULTIRANGEOID
            | pg_sys::ANYCOMPATIBLEOID
            | pg_sys::ANYCOMPATIBLEARRAYOID
            | pg_sys::ANYCOMPATIBLENONARRAYOID
            | pg_sys::ANYCOMPATIBLERANGEOID
            | pg_sys::ANYCOMPATIBLEMULTIRANGEOID
            | pg_sys::ANYOID
    )
}

/// `pg_language`'s fixed OIDs of the built-in (`internal`) and C
/// languages (`pg_language.dat`).
const INTERNAL_LANGUAGE: u32 = 12;
const C_LANGUAGE: u32 = 13;

/// Whether `funcid` is a built-in or C function.
///
/// # Safety
/// On the backend thread.
unsafe fn native(funcid: Oid) -> bool {
    // SAFETY: per the caller; a syscache entry, read and released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, pg_sys::Datum::from(funcid));
        if tuple.is_null() {
            return false;
        }
        let header = (*tuple).t_data;
        let form = header
            .cast::<u8>()
            .add(usize::from((*header).t_hoff))
            .cast::<pg_sys::FormData_pg_proc>();
        let language = (*form).prolang.to_u32();
        pg_sys::ReleaseSysCache(tuple);
        matches!(language, INTERNAL_LANGUAGE | C_LANGUAGE)
    }
}

/// Whether a cast of `from` values to `to` through text may cross the
/// bridge: both I/O functions parallel safe and not volatile, and `to` not
/// a domain (whose input function checks the domain's constraints on
/// NULLs too, which the bridge does not call it for).
///
/// # Safety
/// On the backend thread.
pub unsafe fn castable_via_text(from: Oid, to: Oid) -> Result<(), &'static str> {
    // SAFETY: per the caller; catalog lookups of existing types.
    unsafe {
        if pg_sys::get_typtype(to) as u8 == pg_sys::TYPTYPE_DOMAIN {
            return Err("a cast through text to a domain");
        }
        let (mut output, mut varlena) = (Oid::INVALID, false);
        pg_sys::getTypeOutputInfo(from, &mut output, &mut varlena);
        let (mut input, mut ioparam) = (Oid::INVALID, Oid::INVALID);
        pg_sys::getTypeInputInfo(to, &mut input, &mut ioparam);
        for f in [output, input] {
            if pg_sys::func_volatile(f) as u8 == pg_sys::PROVOLATILE_VOLATILE
                || pg_sys::func_parallel(f) as u8 != pg_sys::PROPARALLEL_SAFE
            {
                return Err("a cast through text by a volatile or parallel-unsafe I/O function");
            }
        }
    }
    Ok(())
}

/// `pg_aggregate`'s attribute numbers (`pg_aggregate.h`).
const ANUM_AGGKIND: i16 = 2;
const ANUM_AGGNUMDIRECTARGS: i16 = 3;
const ANUM_AGGTRANSFN: i16 = 4;
const ANUM_AGGFINALFN: i16 = 5;
const ANUM_AGGCOMBINEFN: i16 = 6;
const ANUM_AGGTRANSTYPE: i16 = 17;
const ANUM_AGGINITVAL: i16 = 21;

/// The transition function of aggregate `aggfnoid` over values of type
/// `typid`, where Postgres folds it ([`super::PgFold`]): a plain
/// aggregate whose state is a value of the aggregated type, starting
/// NULL, with no final function, combined across workers by its
/// transition function itself, which may cross the bridge. A float sum
/// stays with Postgres: its rounding depends on the order of the rows.
///
/// # Safety
/// On the backend thread.
pub unsafe fn foldable(aggfnoid: Oid, typid: Oid) -> Result<Oid, &'static str> {
    // SAFETY: per the caller; a syscache entry, read and released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::AGGFNOID as i32,
            pg_sys::Datum::from(aggfnoid),
        );
        if tuple.is_null() {
            return Err("not an aggregate");
        }
        let attribute = |attnum: i16| {
            let mut null = false;
            let value = pg_sys::SysCacheGetAttr(pg_sys::SysCacheIdentifier::AGGFNOID as i32, tuple, attnum, &mut null);
            (!null).then_some(value)
        };
        let oid = |attnum| attribute(attnum).map_or(Oid::INVALID, |d| Oid::from(d.value() as u32));
        let plain = attribute(ANUM_AGGKIND).is_some_and(|d| d.value() as u8 == b'n')
            && attribute(ANUM_AGGNUMDIRECTARGS).is_some_and(|d| d.value() as i16 == 0);
        let transition = oid(ANUM_AGGTRANSFN);
        let shape = plain
            && oid(ANUM_AGGFINALFN) == Oid::INVALID
            && oid(ANUM_AGGCOMBINEFN) == transition
            && attribute(ANUM_AGGINITVAL).is_none();
        let state = oid(ANUM_AGGTRANSTYPE);
        pg_sys::ReleaseSysCache(tuple);
        if !shape {
            return Err("an aggregate whose state is not one value of its type");
        }
        let base = |t| pg_sys::getBaseType(t);
        // A polymorphic state (anyenum, anyarray) is the argument's type.
        if state != base(typid) && pg_sys::get_typtype(state) as u8 != pg_sys::TYPTYPE_PSEUDO {
            return Err("an aggregate whose state is not one value of its type");
        }
        if matches!(transition.to_u32(), pg_sys::F_FLOAT4PL | pg_sys::F_FLOAT8PL) {
            return Err("a float sum, whose rounding depends on the order of the rows");
        }
        if !pg_sys::func_strict(transition) {
            return Err("an aggregate whose transition function takes NULLs");
        }
        bridgeable(transition)?;
        Ok(transition)
    }
}
