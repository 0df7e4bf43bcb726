//! Heap tuples read in Rust, a page at a time.
//!
//! Postgres's own path costs two guarded calls and a buffer pin round trip
//! per tuple (`heap_getnextslot`, then `slot_getsomeattrs`). Here Postgres
//! still decides which pages a participant reads (the parallel block
//! scan) and which tuples on them are visible (`heapgetpage`, under the
//! scan's snapshot, with the page pinned); weft then walks each visible
//! tuple's attributes itself, by the rules of `heap_deform_tuple`
//! (heaptuple.c): the null bitmap, each attribute's alignment, length and
//! pass-by-value flag, short and long varlena headers. A pinned page's
//! tuples cannot move, so their bytes are read in place.
//!
//! A scan with a filter ([`crate::storage::filter`]) evaluates it on the walked
//! values and hands the readers only the tuples that pass.
//!
//! Attributes a tuple does not store (added to the table after it was
//! written) are NULL, unless the column has a "missing" default, which
//! this reader does not know: scans of such columns keep Postgres's path
//! ([`Layout::new`] says so).
//!
//! The file holds `heap_deform_tuple`'s rules and their fast paths in one
//! place (past 600 lines), since every path must agree on each of them;
//! prefetching is [`crate::storage::prefetch`]'s.

use pgrx::pg_sys::{self, Datum};

// Varlena headers are read in postgres.h's little-endian layout (the
// flag bits low in the first byte).
#[cfg(not(target_endian = "little"))]
compile_error!("weft reads heap tuples in their little-endian layout");

use crate::error::Error;
use crate::storage::filter::{Bound, ScanFilter, Scratch};
use crate::storage::keys::KeySet;
use crate::types::ColumnReader;

/// What the reader needs to know of each attribute up to the last one a
/// scan reads.
pub struct Layout {
    atts: Vec<Att>,
    /// The attribute (index into `atts`) of each filter input.
    input_atts: Vec<usize>,
    /// How many leading attributes have a fixed width: in a tuple without
    /// NULLs each lies at the same offset from `t_hoff` (Postgres's
    /// `attcacheoff`), so the walk need not align and add its way there.
    prefix: usize,
    /// Those of them the scan reads, tests or checks a key of (indexes into
    /// `atts`): the others need not be looked at.
    prefix_used: Vec<usize>,
    /// Where the prefix ends, from `t_hoff`.
    prefix_end: usize,
    /// For each attribute after the prefix, the end (exclusive) of the run
    /// of attributes from it on that the scan neither reads nor tests: the
    /// attribute itself when it is used. In a tuple without NULLs a run is
    /// walked past by [`Layout::pass`], which reads only its [`Step`]s.
    unused_to: Vec<usize>,
    /// Likewise, the end of the run of attributes from each on that a
    /// reader reads and nothing tests (no filter, bound or key): read by
    /// [`Layout::read_run`].
    read_to: Vec<usize>,
    /// Each attribute's [`Step`] (read only after the prefix).
    steps: Vec<Step>,
}

/// What walking past or reading an attribute needs of it, packed (six
/// bytes: ten attributes to a cache line).
///
/// Reading each attribute's whole [`Att`] (over a hundred bytes) and
/// asking it at each step whether the value is wanted, by a filter, a
/// bound, a key or a reader, puts a walk's time on those loads and
/// branches (TPC-H Q14's scan walks past six lineitem attributes to test
/// `l_shipdate`). Runs of attributes that are only walked past
/// ([`Layout::pass`]) or only read ([`Layout::read_run`]) are walked from
/// their steps.
#[derive(Clone, Copy)]
struct Step {
    /// `attlen`: bytes, or -1 for a varlena (C strings are never walked
    /// from steps).
    len: i16,
    /// Alignment in bytes minus one (a mask: 0, 1, 3 or 7).
    align_mask: u8,
    byval: bool,
    /// The reader its values go to ([`Att::reader`]; 0 when none).
    reader: u16,
}

struct Att {
    /// Its name, for messages.
    name: String,
    /// `attlen`: bytes, -1 for a varlena, -2 for a C string.
    len: i16,
    byval: bool,
    /// Alignment in bytes (1, 2, 4 or 8).
    align: usize,
    /// The reader this attribute's values go to, if the scan reads it.
    reader: Option<usize>,
    /// Whether the filter reads it. An attribute neither a reader nor the
    /// filter reads is only walked past.
    input: bool,
    /// The join key filter (index into [`Layout::deform`]'s `keys`) its
    /// values must pass.
    key: Option<usize>,
    /// The range its values must lie in (the filter's bound of it).
    bound: Option<Bound>,
    /// Its offset from `t_hoff` in a tuple without NULLs (attributes in
    /// the fixed-width prefix only).
    cached: usize,
}

impl Layout {
    /// The layout of `descriptor`'s attributes 1..=`last`, with
    /// `readers[i].0` the attribute number reader i reads and `inputs[j]`
    /// the one input j of `filter` reads, `keys[k]` the one join key filter
    /// k reads (an integer column a reader reads); None when a column read
    /// has a missing-value default (Postgres's path then).
    ///
    /// # Safety
    /// `descriptor` is a valid tuple descriptor with at least `last`
    /// attributes.
    pub unsafe fn new(
        descriptor: pg_sys::TupleDesc,
        last: i16,
        readers: &[(i16, ColumnReader)],
        inputs: &[i16],
        filter: Option<&ScanFilter>,
        keys: &[i16],
    ) -> Option<Layout> {
        // SAFETY: per the caller.
        let attributes = unsafe { (*descriptor).attrs.as_slice(last.max(0) as usize) };
        let mut atts = Vec::with_capacity(attributes.len());
        for (i, a) in attributes.iter().enumerate() {
            let attnum = i + 1;
            let reader = readers.iter().position(|(n, _)| *n as usize == attnum);
            let input = inputs.iter().position(|n| *n as usize == attnum);
            if (reader.is_some() || input.is_some()) && a.atthasmissing {
                return None;
            }
            atts.push(Att {
                // SAFETY: attname is a NUL-terminated NameData.
                name: unsafe { std::ffi::CStr::from_ptr(a.attname.data.as_ptr()) }
                    .to_string_lossy()
                    .into_owned(),
                len: a.attlen,
                byval: a.attbyval,
                align: match a.attalign as u8 {
                    b'c' => 1,
                    b's' => 2,
                    b'i' => 4,
                    _ => 8,
                },
                input: input.is_some(),
                key: keys.iter().position(|n| *n as usize == attnum),
                bound: input
                    .and_then(|j| filter?.bounds().iter().find(|b| b.input == j))
                    .copied(),
                reader,
                cached: 0,
            });
        }
        let input_atts = inputs.iter().map(|n| (*n - 1) as usize).collect();
        // t_hoff is aligned to 8 (MAXALIGN), so an offset aligned from it
        // is aligned in the page.
        let mut prefix_end = 0;
        let mut prefix = 0;
        for att in atts.iter_mut().take_while(|a| a.len > 0) {
            let at = align(prefix_end, att.align);
            att.cached = at;
            prefix_end = at + att.len as usize;
            prefix += 1;
        }
        let used = |att: &Att| att.reader.is_some() || att.input || att.key.is_some() || att.bound.is_some();
        let prefix_used = (0..prefix).filter(|&i| used(&atts[i])).collect();
        // A C string (attlen -2, only `name`-like catalog types) ends a
        // run: its length is found by the full walk.
        let unused_to = runs(&atts, prefix, |att| !used(att));
        let read_to = runs(&atts, prefix, |att| {
            att.reader.is_some() && !att.input && att.key.is_none() && att.bound.is_none()
        });
        let steps = atts
            .iter()
            .map(|a| Step {
                len: a.len,
                align_mask: (a.align - 1) as u8,
                byval: a.byval,
                // Readers are at most a table's 1600 columns.
                reader: a.reader.unwrap_or(0) as u16,
            })
            .collect();
        Some(Layout {
            atts,
            input_atts,
            prefix,
            prefix_used,
            prefix_end,
            unused_to,
            read_to,
            steps,
        })
    }

    /// Whether no column is read (the tuples need not be looked at).
    pub fn is_empty(&self) -> bool {
        self.atts.iter().all(|a| a.reader.is_none() && !a.input)
    }

    /// Stages the read columns of `tuple` in `walk` if it passes `filter`
    /// (or there is none) and its join keys are among `keys` (those
    /// published: None passes all); whether it did. A tuple whose key is
    /// missing, or whose value of a bounded filter input lies out of its
    /// bound ([`ScanFilter::bounds`]), is left as soon as the value is read.
    /// For a corrupt tuple or a value the filter cannot read, the column's
    /// name and why.
    ///
    /// # Safety
    /// `tuple` is a visible tuple of a page pinned until `walk` is flushed,
    /// of the relation this layout describes, `len` bytes long; `filter` is
    /// the one this layout was made with; `walk` is not full; on the backend
    /// thread, inside [`crate::pgcall::call`].
    pub unsafe fn deform(
        &self,
        tuple: *const pg_sys::HeapTupleHeaderData,
        len: usize,
        walk: &mut Walk,
        filter: Option<&ScanFilter>,
        keys: &[Option<&KeySet>],
    ) -> Result<bool, (&str, Error)> {
        // SAFETY: per the caller; the header's fields are in the tuple.
        let (natts, has_nulls, hoff) = unsafe {
            (
                usize::from((*tuple).t_infomask2 & pg_sys::HEAP_NATTS_MASK as u16),
                (*tuple).t_infomask & pg_sys::HEAP_HASNULL as u16 != 0,
                usize::from((*tuple).t_hoff),
            )
        };
        let base = tuple.cast::<u8>();
        // SAFETY: the null bitmap follows the fixed header when present.
        let bits = unsafe { std::ptr::addr_of!((*tuple).t_bits).cast::<u8>() };
        let corrupt = |i: usize| (self.atts[i].name.as_str(), Error::from("a corrupt heap tuple"));
        let mut off = hoff;
        let mut start = 0;
        if !has_nulls && natts >= self.prefix && hoff + self.prefix_end <= len {
            for &i in &self.prefix_used {
                let att = &self.atts[i];
                // SAFETY: within the tuple (the prefix's end is, checked
                // above).
                let datum = unsafe { fetch_fixed(att.len, att.byval, base.add(hoff + att.cached)) };
                // SAFETY: the value just read.
                if !unsafe { wanted(att, (datum, false), keys) }? {
                    return Ok(false);
                }
                walk.keep(att, i, (datum, false));
            }
            start = self.prefix;
            off = hoff + self.prefix_end;
        }
        let mut next = start;
        while next < self.atts.len() {
            let end = self.unused_to[next];
            if end > next && !has_nulls && end <= natts {
                // SAFETY: `off` is in the tuple or at its end; a tuple
                // without NULLs stores each of these attributes.
                off = unsafe { self.pass(base, off, len, next..end) }.map_err(corrupt)?;
                next = end;
                continue;
            }
            // (A single attribute read goes the full way: the call costs
            // more than the steps spare it.)
            let end = self.read_to[next];
            if end > next + 1 && !has_nulls && end <= natts {
                // SAFETY: as above.
                off = unsafe { self.read_run(base, off, len, next..end, walk) }.map_err(corrupt)?;
                next = end;
                continue;
            }
            let i = next;
            next += 1;
            let att = &self.atts[i];
            // SAFETY: the bitmap has a bit per stored attribute.
            let null = i >= natts || (has_nulls && unsafe { *bits.add(i >> 3) } & (1 << (i & 7)) == 0);
            if null {
                // SAFETY: a NULL.
                if !unsafe { wanted(att, (Datum::null(), true), keys) }? {
                    return Ok(false);
                }
                walk.keep(att, i, (Datum::null(), true));
                continue;
            }
            let (datum, size) = match att.len {
                -1 => {
                    // A varlena is aligned unless it starts with a short
                    // (1-byte) header, which a pad byte (0) cannot be.
                    // SAFETY: in the tuple (checked against `len` below).
                    if off >= len || unsafe { *base.add(off) } == 0 {
                        off = align(off, att.align);
                    }
                    if off >= len {
                        return Err(corrupt(i));
                    }
                    // SAFETY: a varlena header starts at `off`, within the
                    // tuple, with `len - off` bytes of it from there.
                    let pointer = unsafe { base.add(off) };
                    // SAFETY: as above.
                    let Some(size) = (unsafe { varlena_size(pointer, len - off) }) else {
                        return Err(corrupt(i));
                    };
                    (Datum::from(pointer as usize), size)
                }
                -2 => {
                    // SAFETY: a NUL-terminated string at `off`.
                    let pointer = unsafe { base.add(off) };
                    // SAFETY: as above.
                    let size = unsafe { std::ffi::CStr::from_ptr(pointer.cast()) }.to_bytes().len() + 1;
                    (Datum::from(pointer as usize), size)
                }
                n => {
                    off = align(off, att.align);
                    let size = n as usize;
                    if off + size > len {
                        return Err(corrupt(i));
                    }
                    // SAFETY: `size` bytes at `off`, within the tuple.
                    (unsafe { fetch_fixed(att.len, att.byval, base.add(off)) }, size)
                }
            };
            if off + size > len {
                return Err(corrupt(i));
            }
            // SAFETY: the value just read.
            if !unsafe { wanted(att, (datum, false), keys) }? {
                return Ok(false);
            }
            walk.keep(att, i, (datum, false));
            off += size;
        }
        if let Some(filter) = filter.filter(|f| f.has_more_than_bounds()) {
            let row = &walk.row;
            // SAFETY: the inputs' values of this tuple, per the caller; they
            // lie in the filter's bounds (tested as they were walked).
            let passes = unsafe { filter.passes_beyond_bounds(&mut walk.scratch, |j| row[self.input_atts[j]]) };
            match passes {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err((j, e)) => return Err((self.atts[self.input_atts[j]].name.as_str(), e)),
            }
        }
        walk.staged += 1;
        Ok(true)
    }

    /// The offset after attributes `atts` (none of them NULL, none a C
    /// string) of the tuple at `base`, `len` bytes long, starting at
    /// `off`; for a corrupt tuple, the attribute found so.
    ///
    /// Never inlined: in [`Layout::deform`]'s loop it changes that loop's
    /// code for every scan, and slows both the scans that walk no run of
    /// unused attributes (one column tested, or all 16 of lineitem read)
    /// and those that do (a scan testing `l_shipdate`).
    ///
    /// # Safety
    /// `base` is a tuple of a pinned page, `len` bytes long, and `off` at
    /// most `len`.
    #[inline(never)]
    unsafe fn pass(
        &self,
        base: *const u8,
        mut off: usize,
        len: usize,
        atts: std::ops::Range<usize>,
    ) -> Result<usize, usize> {
        let first = atts.start;
        for (k, step) in self.steps[atts].iter().enumerate() {
            let mask = usize::from(step.align_mask);
            if step.len > 0 {
                off = ((off + mask) & !mask) + step.len as usize;
                if off > len {
                    return Err(first + k);
                }
            } else {
                // SAFETY: per the caller.
                let (at, size) = unsafe { varlena_at(base, off, len, mask) }.ok_or(first + k)?;
                off = at + size;
            }
        }
        Ok(off)
    }

    /// As [`Layout::pass`], staging each attribute's value for its reader
    /// in `walk` (attributes `atts` are read by readers and tested by
    /// nothing).
    ///
    /// Out of line, as `pass` is: scans that read runs of columns (all 16
    /// of lineitem, TPC-H Q1's six read before the one tested) run faster
    /// with it apart.
    ///
    /// # Safety
    /// As for [`Layout::pass`]; `walk` is not full.
    #[inline(never)]
    unsafe fn read_run(
        &self,
        base: *const u8,
        mut off: usize,
        len: usize,
        atts: std::ops::Range<usize>,
        walk: &mut Walk,
    ) -> Result<usize, usize> {
        let first = atts.start;
        for (k, step) in self.steps[atts].iter().enumerate() {
            let mask = usize::from(step.align_mask);
            let datum;
            if step.len > 0 {
                off = (off + mask) & !mask;
                let size = step.len as usize;
                if off + size > len {
                    return Err(first + k);
                }
                // SAFETY: `size` bytes at `off`, in the tuple.
                datum = unsafe { fetch_fixed(step.len, step.byval, base.add(off)) };
                off += size;
            } else {
                // SAFETY: per the caller.
                let (at, size) = unsafe { varlena_at(base, off, len, mask) }.ok_or(first + k)?;
                // SAFETY: `at` is in the tuple.
                datum = Datum::from(unsafe { base.add(at) } as usize);
                off = at + size;
            }
            walk.stage[usize::from(step.reader) * PAGE_TUPLES + walk.staged] = (datum, false);
        }
        Ok(off)
    }
}

/// Tuples of one page a walk may stage: Postgres's MaxHeapTuplesPerPage
/// (a page of empty tuples, each a header and a line pointer).
const PAGE_TUPLES: usize = (pg_sys::BLCKSZ as usize - std::mem::size_of::<pg_sys::PageHeaderData>())
    / (std::mem::size_of::<pg_sys::HeapTupleHeaderData>().next_multiple_of(8)
        + std::mem::size_of::<pg_sys::ItemIdData>());

/// The walk's working space, kept across tuples: the current tuple's filter
/// inputs, and the read values of the tuples of one page that passed, column
/// by column, before they go to their readers ([`Walk::flush`]). Each reader
/// then converts a run of values of one type in one loop, and each value is
/// written once on its way there, where the walk finds it.
pub struct Walk {
    /// The current tuple's filter inputs, by attribute index.
    row: Vec<(Datum, bool)>,
    /// Reader r's staged values are `stage[r * PAGE_TUPLES..][..staged]`.
    stage: Vec<(Datum, bool)>,
    /// Tuples staged since the last flush (at most PAGE_TUPLES).
    staged: usize,
    /// Whether reader r's staged values include a NULL (kept rows or not:
    /// a false alarm only costs its reader a look).
    null_staged: Vec<bool>,
    /// The filter's decoded inputs.
    scratch: Scratch,
}

impl Walk {
    /// Room for `readers` columns of tuples with `attributes` attributes
    /// read.
    pub fn new(readers: usize, attributes: usize) -> Walk {
        Walk {
            row: vec![(Datum::null(), true); attributes],
            stage: vec![(Datum::null(), true); readers * PAGE_TUPLES],
            staged: 0,
            null_staged: vec![false; readers],
            scratch: Scratch::default(),
        }
    }

    /// Whether no more tuples can be staged before a flush.
    pub fn is_full(&self) -> bool {
        self.staged == PAGE_TUPLES
    }

    /// Keeps attribute `i`'s value of the current tuple where the filter
    /// and its reader (if any) find it. A tuple that does not pass leaves
    /// its staged values to be overwritten by the next.
    #[inline(always)]
    fn keep(&mut self, att: &Att, i: usize, value: (Datum, bool)) {
        if let Some(r) = att.reader {
            self.stage[r * PAGE_TUPLES + self.staged] = value;
            // A constant where inlined: the walk knows which values are
            // NULLs.
            if value.1 {
                self.null_staged[r] = true;
            }
        }
        if att.input {
            self.row[i] = value;
        }
    }

    /// Hands the staged values to `readers` (this walk's layout's) and
    /// empties the stage; on a value a reader refuses, its index and why.
    ///
    /// # Safety
    /// The page the values point into is still pinned; on the backend
    /// thread, inside [`crate::pgcall::call`] (a compressed or external
    /// value is detoasted into the current memory context).
    pub unsafe fn flush(&mut self, readers: &mut [(i16, ColumnReader)]) -> Result<(), (usize, Error)> {
        let staged = std::mem::take(&mut self.staged);
        for (r, (_, reader)) in readers.iter_mut().enumerate() {
            let values = &self.stage[r * PAGE_TUPLES..][..staged];
            let any_null = std::mem::take(&mut self.null_staged[r]);
            // SAFETY: values of the reader's column, per the caller.
            unsafe { reader.push_all(values, any_null) }.map_err(|e| (r, e))?;
        }
        Ok(())
    }
}

/// Whether a tuple whose attribute `att` has `value` (a datum, whether it
/// is NULL) may pass: its join key is among the keys published (`keys`,
/// as [`Layout::deform`] has them), its value in the filter's bound. For a
/// value the bound cannot read, the attribute's name and why.
///
/// # Safety
/// `value` is the attribute's, as the walk read it from a pinned page.
#[inline(always)]
unsafe fn wanted<'a>(
    att: &'a Att,
    (datum, null): (Datum, bool),
    keys: &[Option<&KeySet>],
) -> Result<bool, (&'a str, Error)> {
    if let Some(set) = att.key.and_then(|k| keys[k]) {
        // A key column is an integer passed by value: the datum is its
        // value, sign-extended. NULL equals no key.
        if null || !set.contains(datum.value() as i64) {
            return Ok(false);
        }
    }
    match &att.bound {
        None => Ok(true),
        // SAFETY: per the caller, a value of the attribute's type.
        Some(b) => unsafe { b.admits(datum, null) }.map_err(|e| (att.name.as_str(), e)),
    }
}

/// Where the varlena at `off` of the tuple at `base` (`len` bytes long)
/// starts, and its size, header included: at `off`, or aligned up to
/// `mask` + 1 past pad bytes (a short header is never aligned, and is
/// never 0); None for a corrupt tuple (the header or the value not inside
/// it, or a header no page may hold).
///
/// # Safety
/// `base` is a tuple of a pinned page, `len` bytes long.
#[inline(always)]
unsafe fn varlena_at(base: *const u8, off: usize, len: usize, mask: usize) -> Option<(usize, usize)> {
    if off >= len {
        return None;
    }
    let mut at = off;
    // SAFETY: `at` is in the tuple.
    if unsafe { *base.add(at) } == 0 {
        at = (at + mask) & !mask;
        if at >= len {
            return None;
        }
    }
    // SAFETY: a varlena header at `at`, in the tuple.
    let size = unsafe { varlena_size(base.add(at), len - at) }?;
    (at + size <= len).then_some((at, size))
}

/// The size, header included, of the varlena whose header starts at
/// `pointer` in a tuple on a page (`VARSIZE_ANY`), with `room` bytes of
/// the tuple from there on; None when its header does not fit in them or
/// is not one Postgres writes to a page (a corrupt tuple).
///
/// A page is untrusted input. pgrx's `varsize_any` panics on an unknown
/// TOAST pointer tag, and accepts the in-memory ones (indirect and
/// expanded), whose pointers a reader would follow: on a page only a
/// pointer to the TOAST table is valid.
///
/// # Safety
/// `pointer` points into a pinned page, with `room` (at least 1) bytes of
/// the tuple from there on.
#[inline(always)]
unsafe fn varlena_size(pointer: *const u8, room: usize) -> Option<usize> {
    // SAFETY: per the caller, the first byte is in the tuple.
    let first = unsafe { *pointer };
    if first & 0x01 == 0x01 {
        if first != 0x01 {
            // A short (1-byte) header: the size in its upper seven bits.
            return Some(usize::from(first >> 1));
        }
        // A TOAST pointer (VARATT_IS_1B_E): a tag byte, then the pointer.
        if room < 2 {
            return None;
        }
        // SAFETY: the tag byte is in the tuple (room >= 2).
        let tag = pg_sys::vartag_external::Type::from(unsafe { *pointer.add(1) });
        return (tag == pg_sys::vartag_external::VARTAG_ONDISK)
            .then(|| pg_sys::VARHDRSZ_EXTERNAL + std::mem::size_of::<pg_sys::varatt_external>());
    }
    if room < 4 {
        return None;
    }
    // SAFETY: a 4-byte header, in the tuple (room >= 4); its size in the
    // upper thirty bits (the little-endian layout).
    let header = unsafe { pointer.cast::<u32>().read_unaligned() };
    Some(header as usize >> 2)
}

/// For each attribute of `atts` after the first `prefix`, the end
/// (exclusive) of the run of attributes from it on that are all `member`s
/// and none a C string; the attribute itself when it is not one.
fn runs(atts: &[Att], prefix: usize, member: impl Fn(&Att) -> bool) -> Vec<usize> {
    let mut to = vec![0; atts.len()];
    let mut end = atts.len();
    for (i, att) in atts.iter().enumerate().rev() {
        if i < prefix || att.len == -2 || !member(att) {
            end = i;
        }
        to[i] = end;
    }
    to
}

/// The datum of a fixed-width attribute of `len` bytes stored at
/// `pointer`: its value if passed by value (`byval`, fetch_att's reads),
/// else the pointer.
///
/// # Safety
/// `len` bytes at `pointer` are in a pinned page.
#[inline(always)]
unsafe fn fetch_fixed(len: i16, byval: bool, pointer: *const u8) -> Datum {
    if !byval {
        return Datum::from(pointer as usize);
    }
    // SAFETY: per the caller.
    unsafe {
        match len {
            1 => Datum::from(*pointer),
            2 => Datum::from(pointer.cast::<i16>().read_unaligned()),
            4 => Datum::from(pointer.cast::<i32>().read_unaligned()),
            _ => Datum::from(pointer.cast::<i64>().read_unaligned()),
        }
    }
}

/// `off` rounded up to `align` (a power of two).
fn align(off: usize, align: usize) -> usize {
    (off + align - 1) & !(align - 1)
}

/// The page in shared (or local) buffer `buffer`.
///
/// # Safety
/// `buffer` is a shared buffer's number (1 ..= NBuffers) or a pinned local
/// one; pinned, for the page's contents to be read.
pub unsafe fn page(buffer: pg_sys::Buffer) -> *const u8 {
    // SAFETY: per the caller; BufferGetBlock's arithmetic (shared buffers
    // count from 1, local ones from -1).
    unsafe {
        if buffer < 0 {
            (*pg_sys::LocalBufferBlockPointers.add((-buffer - 1) as usize)).cast::<u8>()
        } else {
            pg_sys::BufferBlocks
                .cast::<u8>()
                .add((buffer as usize - 1) * pg_sys::BLCKSZ as usize)
        }
    }
}

/// The tuple at line pointer `offset` of the page in `buffer`, and its
/// length.
///
/// # Safety
/// `buffer` is pinned, `offset` one of its normal line pointers (as
/// `heapgetpage` lists them).
pub unsafe fn page_tuple(buffer: pg_sys::Buffer, offset: u16) -> (*const pg_sys::HeapTupleHeaderData, usize) {
    // SAFETY: per the caller.
    unsafe {
        let page = page(buffer);
        let header = page.cast::<pg_sys::PageHeaderData>();
        let item = std::ptr::addr_of!((*header).pd_linp)
            .cast::<pg_sys::ItemIdData>()
            .add(usize::from(offset) - 1);
        let (at, len) = ((*item).lp_off() as usize, (*item).lp_len() as usize);
        (page.add(at).cast(), len)
    }
}
