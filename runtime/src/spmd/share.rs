//! Deterministic shares: how a list of things (batches, files, block
//! ranges) is split among participants so that every process, whatever
//! order it learnt the list in, gives each participant the same share.

/// Participant `me`'s share of `items` among `participants`: sorts a copy,
/// then takes the `me`-th of `participants` contiguous ranges (sizes differ
/// by at most one). The shares are disjoint and their union is `items`.
///
/// ```
/// use weft_runtime::share;
/// let files = ["c", "a", "d", "b", "e"];
/// assert_eq!(share(&files, 2, 0), ["a", "b", "c"]);
/// assert_eq!(share(&files, 2, 1), ["d", "e"]);
/// ```
pub fn share<T: Ord + Clone>(items: &[T], participants: usize, me: usize) -> Vec<T> {
    if participants == 0 || me >= participants {
        return Vec::new();
    }
    let mut sorted = items.to_vec();
    sorted.sort();
    let (start, end) = share_range(sorted.len(), participants, me);
    sorted[start..end].to_vec()
}

/// The `me`-th of `participants` contiguous ranges of `0..len`: the first
/// `len % participants` ranges hold one item more than the rest.
pub fn share_range(len: usize, participants: usize, me: usize) -> (usize, usize) {
    if participants == 0 || me >= participants {
        return (len, len);
    }
    let (base, extra) = (len / participants, len % participants);
    let start = me * base + me.min(extra);
    let end = start + base + usize::from(me < extra);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_everything_once_whatever_the_input_order() {
        for len in 0..40usize {
            for participants in 1..6 {
                let items: Vec<usize> = (0..len).collect();
                let mut reversed = items.clone();
                reversed.reverse();
                let mut rotated = items.clone();
                rotated.rotate_left(len / 3);
                let mut all = Vec::new();
                for me in 0..participants {
                    let mine = share(&items, participants, me);
                    assert_eq!(mine, share(&reversed, participants, me));
                    assert_eq!(mine, share(&rotated, participants, me));
                    assert!(mine.len().abs_diff(len / participants) <= 1);
                    all.extend(mine);
                }
                assert_eq!(all, items, "len {len}, {participants} participants");
            }
        }
        assert!(share(&[1, 2, 3], 2, 2).is_empty());
    }
}
