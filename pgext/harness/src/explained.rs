//! Which plans ran, read from auto_explain's notices: a session that loads
//! auto_explain with [`AUTO_EXPLAIN`] and collects its notices
//! ([`crate::Cluster::connect_collecting_notices`]) is sent every plan its
//! queries ran (nested ones too, with EXPLAIN ANALYZE's lines), and
//! [`plans`] and [`run_by_weft`] read them.

use std::sync::{Arc, Mutex};

/// Statements that make auto_explain send the session a NOTICE with the
/// plan of every query it runs, nested ones too, with ANALYZE's lines
/// (without timings).
pub const AUTO_EXPLAIN: &str = "LOAD 'auto_explain';
     SET auto_explain.log_min_duration = 0;
     SET auto_explain.log_level = notice;
     SET auto_explain.log_nested_statements = on;
     SET auto_explain.log_analyze = on;
     SET auto_explain.log_timing = off";

/// A table of 20,000 sales (`i` its primary key; NULL regions among
/// them), analyzed.
pub const SALES: &str = "CREATE TABLE sales (i int PRIMARY KEY, region text, qty int, amount numeric(10, 2));
     INSERT INTO sales SELECT g, (ARRAY['north', 'south', 'east', NULL])[1 + g % 4], g % 13, (g % 97) * 1.5
       FROM generate_series(1, 20000) g;
     ANALYZE sales";

/// The plans auto_explain sent since the last call (taken out of
/// `notices`).
///
/// # Panics
/// If another thread panicked while holding `notices`.
pub fn plans(notices: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    std::mem::take(&mut *notices.lock().unwrap())
        .into_iter()
        .filter(|notice| notice.contains("Query Text:"))
        .collect()
}

/// How many of `plans` weft ran: a Weft scan, not handed back to the
/// stock plan.
pub fn run_by_weft(plans: &[String]) -> usize {
    plans
        .iter()
        .filter(|plan| plan.contains("Custom Scan (Weft)") && !plan.contains("handed back"))
        .count()
}
