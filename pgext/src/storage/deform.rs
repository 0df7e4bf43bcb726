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

/// How many tuples ahead of the one walked [`prefetch_tuple`] is asked for.
///
/// [`prefetch_page`] alone leaves the first touch of each tuple a cache
/// miss waited for (the load of `t_infomask2`): a burst of 128 prefetches
/// is more than the CPU keeps in flight. Asking for each tuple while the
/// tenth before it is walked keeps a few misses in flight all the time,
/// which most helps a scan that tests one attribute of each tuple. Any
/// distance from 6 to 10 serves alike (measured: see benches/README.md,
/// 'lineitem scan rates'); the second cache line matters as much as the
/// first (the attributes after a 24-byte header).
pub const PREFETCH_AHEAD: usize = 10;

/// Asks the CPU to bring the first two cache lines of the tuple at line
/// pointer `offset` of the page in `buffer` into its cache (the header and
/// the attributes after it, most of what a walk reads).
///
/// # Safety
/// As for [`page_tuple`].
#[inline(always)]
pub unsafe fn prefetch_tuple(buffer: pg_sys::Buffer, offset: u16) {
    // SAFETY: per the caller.
    let (tuple, _) = unsafe { page_tuple(buffer, offset) };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: addresses in or just past the tuple, inside the page's
    // buffer or the next (a prefetch never faults, reads nothing).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(tuple.cast());
        _mm_prefetch::<_MM_HINT_T0>(tuple.cast::<i8>().wrapping_add(64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = tuple;
}

/// Asks the CPU to bring the tuples of the page in `buffer` into its cache
/// at once (from the page's end down to `pd_upper`, where tuple data
/// starts).
///
/// The scan is bound by memory latency: walking a page's tuples one by one
/// takes a cache miss per tuple, each waited for in turn. Prefetching the
/// whole tuple area lets those misses overlap. It still helps beside
/// [`prefetch_tuple`], for the page's first tuples, which are walked
/// before their tuple prefetches could arrive.
///
/// # Safety
/// `buffer` is pinned.
pub unsafe fn prefetch_page(buffer: pg_sys::Buffer) {
    const LINE: usize = 64;
    // SAFETY: per the caller; pd_upper is within the page (a corrupt value
    // only prefetches less, prefetching never faults).
    let (page, upper) = unsafe {
        let page = page(buffer);
        (
            page,
            usize::from((*page.cast::<pg_sys::PageHeaderData>()).pd_upper) & !(LINE - 1),
        )
    };
    #[cfg(target_arch = "x86_64")]
    // From the page's end down: the walk reads the tuples in line pointer
    // order, and Postgres fills a page from its end, so the first tuple
    // read is the last one in memory.
    for at in (upper..pg_sys::BLCKSZ as usize).step_by(LINE).rev() {
        // SAFETY: an address inside the page; a prefetch reads nothing.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(page.add(at).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (page, upper);
}

/// Asks the CPU to bring all of page `page` (any block of the buffer
/// pool, pinned or not: nothing is read) into its cache.
///
/// For a page about to be read all over in an order the hardware cannot
/// guess, such as a btree leaf's binary searches ([`crate::storage::btree`]):
/// prefetched a page ahead, its cache misses overlap with each other and
/// with the work in between instead of being waited for one by one.
pub fn prefetch_block(page: *const u8) {
    prefetch_lines(page, 0, pg_sys::BLCKSZ as usize / 64);
}

/// Asks the CPU to bring `lines` cache lines of page `page` from byte
/// `at` on into its cache (any block of the buffer pool; nothing is
/// read, and an `at` past the page only prefetches the next).
pub fn prefetch_lines(page: *const u8, at: usize, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in 0..lines {
        // SAFETY: a prefetch reads nothing and never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                page.wrapping_add(at + 64 * line).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (page, at, lines);
}

/// The page a walk expects to read after the current one, brought into
/// the cache a few lines per tuple walked, so that its misses overlap the
/// walk of the page before it instead of stalling the walk of its own.
///
/// [`prefetch_page`]'s burst at the start of a page asks for more lines
/// than the CPU keeps in flight, and [`prefetch_tuple`] only runs ten
/// tuples ahead: each page's first tuples and its line pointers (read by
/// `heapgetpage`) still wait for memory. Asking for the next page a few
/// lines per tuple of the current one spreads its misses over the walk
/// instead; in a model of the walk (`scripts/prefetch-model.c`) as in the
/// scan itself, it helps most the scans that read least of each tuple.
///
/// The next page is the next block's buffer, as
/// [`crate::storage::page::guess_next`] or, failing
/// it, [`pg_sys::PrefetchBuffer`] finds it in the buffer pool (the block
/// after the current one: a parallel block scan hands out runs of
/// consecutive blocks); [`crate::storage::page::read_page`] pins that same buffer
/// when the walk gets there, if it still holds the block. The buffer
/// is not pinned, so by the time the walk gets there it may hold another
/// page: the prefetch is then wasted, never wrong (a prefetch reads
/// nothing). A block not in the pool makes `PrefetchBuffer` advise the
/// kernel instead (a system call), so after one such block the next
/// [`Lookahead::SKIP_AFTER_MISS`] are not looked up.
#[derive(Default)]
pub struct Lookahead {
    /// The next page's first byte; None when there is no next page to ask
    /// for.
    page: Option<*const u8>,
    /// The lines of it asked for so far (in [`Lookahead::step`]'s order).
    asked: usize,
    /// Lines to ask for per tuple walked: the page's lines spread over the
    /// current page's tuples.
    per_tuple: usize,
    /// Pages left to read before the next lookup (after a miss).
    skip: u32,
    /// Pages left to look up without guessing (after wrong guesses).
    no_guess: u32,
    /// Wrong guesses since the last right one.
    wrong: u32,
    /// The block last looked up and the buffer that held it then, for
    /// [`crate::storage::page::read_page`] to pin without a second lookup.
    found: Option<(pg_sys::BlockNumber, pg_sys::Buffer)>,
}

impl Lookahead {
    /// Pages not looked up after one not found in the buffer pool.
    pub const SKIP_AFTER_MISS: u32 = 32;
    /// The most pages looked up without guessing
    /// ([`crate::storage::page::guess_next`]) after wrong guesses:
    /// a pool not filled in table order pays for a wrong guess (a few
    /// cache misses) on one page in 17 at most. Fewer after the first
    /// few: a scan jumping to its next run of blocks, or a block a
    /// parallel scan's other process read between two of its own, makes
    /// a wrong guess among right ones. (With 16 after every wrong guess,
    /// a scan of a table read by two processes, whose guesses go wrong
    /// now and then, would look up a large share of its pages: measured,
    /// see benches/README.md, 'lineitem scan rates'.)
    pub const NO_GUESS_AFTER_WRONG: u32 = 16;
    /// Cache lines in a page.
    const LINES: usize = pg_sys::BLCKSZ as usize / 64;
    /// Lines at the page's start asked for first: the page header and the
    /// line pointers of up to 226 tuples.
    const HEAD_LINES: usize = 4;

    /// Looks up `block` of `rel`, the block expected after the current
    /// page (in `current`), whose `tuples` visible tuples are about to be
    /// walked.
    ///
    /// # Safety
    /// `rel` is an open relation and `block` one of its blocks, on the
    /// backend thread, inside [`crate::pgcall::call`] (the lookup may raise
    /// an ERROR, for another session's temporary table); `current` is a
    /// buffer number.
    pub unsafe fn aim(
        &mut self,
        rel: pg_sys::Relation,
        block: pg_sys::BlockNumber,
        tuples: usize,
        current: pg_sys::Buffer,
    ) {
        self.page = None;
        self.found = None;
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let guessed = if self.no_guess > 0 {
            self.no_guess -= 1;
            None
        } else {
            // SAFETY: per the caller.
            let guessed = unsafe { crate::storage::page::guess_next(rel, block, current) };
            if guessed.is_some() {
                self.wrong = 0;
            } else {
                // 0, 1, 3, 7, then 16 pages without guessing.
                self.wrong = (self.wrong + 1).min(5);
                self.no_guess = match self.wrong {
                    5 => Self::NO_GUESS_AFTER_WRONG,
                    n => (1 << (n - 1)) - 1,
                };
            }
            guessed
        };
        let buffer = match guessed {
            Some(buffer) => buffer,
            None => {
                // SAFETY: per the caller.
                let found = unsafe { pg_sys::PrefetchBuffer(rel, pg_sys::ForkNumber::MAIN_FORKNUM, block) };
                if found.recent_buffer == pg_sys::InvalidBuffer as pg_sys::Buffer {
                    self.skip = Self::SKIP_AFTER_MISS;
                    return;
                }
                found.recent_buffer
            }
        };
        // SAFETY: a valid buffer number (shared or local); only the
        // address is computed, nothing is read.
        self.page = Some(unsafe { page(buffer) });
        self.found = Some((block, buffer));
        self.asked = 0;
        self.per_tuple = Self::LINES.div_ceil(tuples.max(1));
    }

    /// The buffer that held `block` when it was looked up, if it was the
    /// block looked up last; `InvalidBuffer` otherwise.
    pub fn recent(&self, block: pg_sys::BlockNumber) -> pg_sys::Buffer {
        match self.found {
            Some((found, buffer)) if found == block => buffer,
            _ => pg_sys::InvalidBuffer as pg_sys::Buffer,
        }
    }

    /// Asks for the next few lines of the next page; called once per tuple
    /// of the current one.
    #[inline(always)]
    pub fn step(&mut self) {
        let Some(page) = self.page else { return };
        let until = (self.asked + self.per_tuple).min(Self::LINES);
        for k in self.asked..until {
            let line = if k < Self::HEAD_LINES {
                k
            } else {
                // From the page's end down, the order the walk reads
                // tuples in (Postgres fills a page from its end).
                Self::LINES - 1 - (k - Self::HEAD_LINES)
            };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: an address inside a buffer of the pool; a prefetch
            // reads nothing and never faults.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    page.wrapping_add(line * 64).cast(),
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (page, line);
        }
        self.asked = until;
        if until == Self::LINES {
            self.page = None;
        }
    }
}
