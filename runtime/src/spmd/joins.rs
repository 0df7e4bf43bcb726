//! What a join type's output is made of, stated once for the rules that
//! move joins around: [`Distribute`](crate::Distribute) here, and the
//! passes of an embedder that feed a join's keys to the scan under its
//! probe side (pgext's join keys and index lookups).
//!
//! In a hash join, the build side is the left input and the probe side
//! the right, as DataFusion's `HashJoinExec` has them.

use datafusion::common::JoinType;

/// Whether a join of `join_type` gives the same result without the probe
/// rows that match no build row: true unless it outputs unmatched probe
/// rows (right, full and right anti joins) or marks rows by whether
/// anything matched in a way a NULL could change (mark joins). A filter
/// on the probe side that keeps only rows with a matching key is then
/// exact.
///
/// ```
/// use datafusion::common::JoinType;
/// use weft_runtime::joins::drops_unmatched_probe_rows;
///
/// assert!(drops_unmatched_probe_rows(JoinType::LeftAnti));
/// assert!(!drops_unmatched_probe_rows(JoinType::Right));
/// ```
pub fn drops_unmatched_probe_rows(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::RightSemi
    )
}

/// Whether every output row of a join of `join_type` comes from one build
/// row (its matches, or the row itself): a participant holding a share of
/// the build side and every probe row matching it computes exactly that
/// share of the output.
///
/// ```
/// use datafusion::common::JoinType;
/// use weft_runtime::joins::output_per_build_row;
///
/// assert!(output_per_build_row(JoinType::Left));
/// assert!(!output_per_build_row(JoinType::RightSemi));
/// ```
pub fn output_per_build_row(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
    )
}

/// Whether every output row of a join of `join_type` comes from one probe
/// row judged against the whole build side: a participant holding the
/// whole build side and a share of the probe rows computes exactly that
/// share of the output.
///
/// ```
/// use datafusion::common::JoinType;
/// use weft_runtime::joins::output_per_probe_row;
///
/// assert!(output_per_probe_row(JoinType::RightSemi));
/// assert!(!output_per_probe_row(JoinType::Left));
/// ```
pub fn output_per_probe_row(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark
    )
}

/// Whether a join of `join_type`, with the build side collected whole,
/// emits build rows after the last probe partition ends (DataFusion's
/// `need_produce_result_in_final`): unmatched or marked build rows, whose
/// fate only the whole probe side decides.
///
/// ```
/// use datafusion::common::JoinType;
/// use weft_runtime::joins::emits_build_rows_at_end;
///
/// assert!(emits_build_rows_at_end(JoinType::Full));
/// assert!(!emits_build_rows_at_end(JoinType::Inner));
/// ```
pub fn emits_build_rows_at_end(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark | JoinType::Full
    )
}
