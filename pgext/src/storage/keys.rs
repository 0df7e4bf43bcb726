//! The key set a scan keeps rows by: a hash join's build keys, published
//! once the build side is read ([`crate::plan::keys`]), read by the scan
//! under its probe side, which drops every row whose key is not among
//! them.

use std::sync::OnceLock;

use rustc_hash::FxHashSet;

/// Key ranges up to this wide are held as a bitmap (8 MiB at most), which
/// answers with one load; wider ones as a hash set.
const MAX_BITMAP_RANGE: u64 = 1 << 26;

/// The distinct non-NULL values of a build side's key.
#[derive(Debug)]
pub enum KeySet {
    /// Keys spanning a narrow range (most join keys are dense).
    Bitmap {
        /// The smallest key.
        min: i64,
        /// Bit `v - min` is set for each key `v`.
        bits: Vec<u64>,
    },
    /// Keys spanning a wide range.
    Hash(FxHashSet<i64>),
}

impl KeySet {
    /// The set of `keys` (in any order, repeats allowed).
    pub fn new(keys: &[i64]) -> KeySet {
        let (Some(&min), Some(&max)) = (keys.iter().min(), keys.iter().max()) else {
            return KeySet::Bitmap {
                min: 0,
                bits: Vec::new(),
            };
        };
        let range = max.abs_diff(min);
        if range < MAX_BITMAP_RANGE {
            let mut bits = vec![0u64; (range / 64 + 1) as usize];
            for &k in keys {
                let at = k.abs_diff(min);
                bits[(at / 64) as usize] |= 1 << (at % 64);
            }
            KeySet::Bitmap { min, bits }
        } else {
            KeySet::Hash(keys.iter().copied().collect())
        }
    }

    /// Whether `key` is in the set.
    #[inline]
    pub fn contains(&self, key: i64) -> bool {
        match self {
            KeySet::Bitmap { min, bits } => {
                let Some(at) = key.checked_sub(*min) else {
                    return false;
                };
                // A negative offset is below min: as u64 it is beyond the bitmap.
                let at = at as u64;
                bits.get((at / 64) as usize).is_some_and(|w| w & (1 << (at % 64)) != 0)
            }
            KeySet::Hash(set) => set.contains(&key),
        }
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        match self {
            KeySet::Bitmap { bits, .. } => bits.iter().map(|w| w.count_ones() as usize).sum(),
            KeySet::Hash(set) => set.len(),
        }
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys, ascending.
    pub fn sorted(&self) -> Vec<i64> {
        match self {
            KeySet::Bitmap { min, bits } => {
                // Set bits only, lowest first: a bitmap spanning millions of
                // values may hold a few thousand.
                let mut keys = Vec::with_capacity(self.len());
                for (w, &word) in bits.iter().enumerate() {
                    let mut rest = word;
                    while rest != 0 {
                        let b = rest.trailing_zeros() as usize;
                        keys.push(min.wrapping_add((w * 64 + b) as i64));
                        rest &= rest - 1;
                    }
                }
                keys
            }
            KeySet::Hash(set) => {
                let mut keys: Vec<i64> = set.iter().copied().collect();
                keys.sort_unstable();
                keys
            }
        }
    }
}

/// Where a build side publishes its keys for the scan below the probe side.
#[derive(Debug, Default)]
pub struct KeySlot {
    set: OnceLock<KeySet>,
}

impl KeySlot {
    /// The keys, once the build side has been read whole.
    pub fn get(&self) -> Option<&KeySet> {
        self.set.get()
    }

    /// Publishes the keys; the first set published stays.
    pub fn publish(&self, keys: KeySet) {
        let _ = self.set.set(keys);
    }
}
