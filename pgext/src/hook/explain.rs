//! EXPLAIN of a taken-over query in Postgres's own form.
//!
//! The Weft scan's node carries who runs the plan and, after a run, the
//! shared memory it took and each exchange's traffic; the distributed
//! plan's operators follow as the node's child plans ("Plans"), each a
//! plan node of its own. Everything goes through Postgres's EXPLAIN API
//! (`ExplainProperty*`, `ExplainOpenGroup`), so every format is what
//! Postgres makes of it: valid JSON, YAML and XML that the tools parsing
//! plans (auto_explain, plan visualisers) read as nested nodes.
//!
//! In the text format the operators are DataFusion's lines (the leader's
//! metrics included) under the scan. After a run each operator shows its
//! rows and compute time summed over the participants, each exchange one
//! line of traffic; `VERBOSE` adds each participant's and each edge's.
//! In the structured formats an operator's `Actual Rows` is its rows over
//! all participants, with `Actual Loops` 1, so that rows times loops is
//! the total as with Postgres's own nodes; its time is `Weft Compute Time`
//! (the operator's own work, summed), not Postgres's inclusive `Actual
//! Total Time`.

use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use weft_runtime::{ExchangeTraffic, ExplainNode};

use crate::exec::explain::Explained;

/// What EXPLAIN shows of a Weft scan.
pub enum Explanation {
    /// The plan weft runs (or ran).
    Plan(Explained),
    /// The query was handed back to the stock plan while it ran, for this
    /// reason.
    HandedBack(String),
}

/// Adds `explanation` to the Weft scan's node in `es`.
///
/// # Safety
/// `es` is the ExplainState of the EXPLAIN under way, inside the scan's
/// node (Postgres's `ExplainCustomScan` callback), on the backend thread.
pub unsafe fn emit(es: *mut pg_sys::ExplainState, explanation: &Explanation) {
    // SAFETY: per the caller.
    let (text, verbose) = unsafe {
        (
            (*es).format == pg_sys::ExplainFormat::EXPLAIN_FORMAT_TEXT,
            (*es).verbose,
        )
    };
    let out = Out { es };
    let explained = match explanation {
        Explanation::HandedBack(reason) => {
            out.text("Weft", &format!("handed back to Postgres's plan: {reason}"));
            return;
        }
        Explanation::Plan(explained) => explained,
    };
    out.text("Weft", &explained.heading());
    if !text {
        out.integer("Weft Participants", explained.participants as i64);
        out.integer("Weft Workers Requested", explained.requested as i64);
        if let Some(reason) = &explained.refused {
            out.text("Weft Leader Alone", reason);
        }
    }
    if let Some(memory) = explained.memory_value() {
        out.text("Weft Shared Memory", &memory);
    }
    if text {
        if explained.memory.is_some() {
            out.lines(&explained.exchange_lines(verbose));
        }
        out.lines(&explained.operator_lines(verbose));
        return;
    }
    if explained.memory.is_some() {
        out.open("Weft Exchanges", Some("Weft Exchanges"), false);
        for exchange in &explained.exchanges {
            out.exchange(exchange, verbose);
        }
        out.close("Weft Exchanges", Some("Weft Exchanges"), false);
    }
    out.open("Plans", Some("Plans"), false);
    out.operator(&explained.plan, verbose);
    out.close("Plans", Some("Plans"), false);
}

/// Writes to an ExplainState on the backend thread (the caller of
/// [`emit`] vouches for it).
struct Out {
    es: *mut pg_sys::ExplainState,
}

impl Out {
    fn open(&self, objtype: &str, label: Option<&str>, labeled: bool) {
        let objtype = c_string(objtype);
        let label = label.map(c_string);
        // SAFETY: see the struct.
        unsafe {
            pg_sys::ExplainOpenGroup(
                objtype.as_ptr(),
                label.as_ref().map_or(std::ptr::null(), |l| l.as_ptr()),
                labeled,
                self.es,
            )
        };
    }

    fn close(&self, objtype: &str, label: Option<&str>, labeled: bool) {
        let objtype = c_string(objtype);
        let label = label.map(c_string);
        // SAFETY: see the struct.
        unsafe {
            pg_sys::ExplainCloseGroup(
                objtype.as_ptr(),
                label.as_ref().map_or(std::ptr::null(), |l| l.as_ptr()),
                labeled,
                self.es,
            )
        };
    }

    fn text(&self, label: &str, value: &str) {
        let (label, value) = (c_string(label), c_string(value));
        // SAFETY: see the struct.
        unsafe { pg_sys::ExplainPropertyText(label.as_ptr(), value.as_ptr(), self.es) };
    }

    fn integer(&self, label: &str, value: i64) {
        let label = c_string(label);
        // SAFETY: see the struct.
        unsafe { pg_sys::ExplainPropertyInteger(label.as_ptr(), std::ptr::null(), value, self.es) };
    }

    fn float(&self, label: &str, unit: Option<&CStr>, value: f64, digits: i32) {
        let label = c_string(label);
        let unit = unit.map_or(std::ptr::null(), CStr::as_ptr);
        // SAFETY: see the struct.
        unsafe { pg_sys::ExplainPropertyFloat(label.as_ptr(), unit, value, digits, self.es) };
    }

    fn millis(&self, label: &str, time: std::time::Duration) {
        self.float(label, Some(c"ms"), time.as_secs_f64() * 1e3, 3);
    }

    /// Lines under the scan's node, in the text format.
    fn lines(&self, lines: &[String]) {
        for line in lines {
            let line = c_string(line);
            // SAFETY: see the struct.
            unsafe {
                pg_sys::appendStringInfoSpaces((*self.es).str_, (*self.es).indent * 2 + 2);
                pg_sys::appendStringInfoString((*self.es).str_, line.as_ptr());
                pg_sys::appendStringInfoString((*self.es).str_, c"\n".as_ptr());
            }
        }
    }

    fn exchange(&self, exchange: &ExchangeTraffic, verbose: bool) {
        self.open("Weft Exchange", None, true);
        self.integer("Exchange", i64::from(exchange.exchange));
        self.integer("Rows", exchange.sent.rows as i64);
        self.integer("Rows Received", exchange.rows_received as i64);
        self.integer("Bytes", exchange.sent.bytes as i64);
        self.integer("Batches", exchange.sent.batches as i64);
        self.millis("Worst Send Stall", exchange.worst_send_stall);
        self.millis("Worst Receive Stall", exchange.worst_receive_stall);
        if verbose {
            self.open("Edges", Some("Edges"), false);
            for (edge, sent, received) in &exchange.edges {
                self.open("Edge", None, true);
                self.integer("Sender", i64::from(edge.sender));
                self.integer("Receiver", i64::from(edge.receiver));
                self.integer("Rows", sent.rows as i64);
                self.integer("Bytes", sent.bytes as i64);
                self.millis("Send Stall", sent.stalled);
                self.millis("Receive Stall", received.stalled);
                self.close("Edge", None, true);
            }
            self.close("Edges", Some("Edges"), false);
        }
        self.close("Weft Exchange", None, true);
    }

    fn operator(&self, node: &ExplainNode, verbose: bool) {
        self.open("Plan", None, true);
        self.text("Node Type", &node.name);
        self.text("Weft Operator", &node.detail);
        if node.measured && !node.runs.is_empty() {
            self.float("Actual Rows", None, node.rows() as f64, 0);
            self.float("Actual Loops", None, 1.0, 0);
            self.millis("Weft Compute Time", node.compute());
            self.integer("Weft Participants", node.runs.len() as i64);
            if verbose {
                self.open("Participants", Some("Participants"), false);
                for (participant, run) in node.runs.iter().enumerate() {
                    self.open("Participant", None, true);
                    self.integer("Participant Number", participant as i64);
                    self.float("Actual Rows", None, run.rows as f64, 0);
                    self.millis("Weft Compute Time", run.compute);
                    self.close("Participant", None, true);
                }
                self.close("Participants", Some("Participants"), false);
            }
        }
        if !node.children.is_empty() {
            self.open("Plans", Some("Plans"), false);
            for child in &node.children {
                self.operator(child, verbose);
            }
            self.close("Plans", Some("Plans"), false);
        }
        self.close("Plan", None, true);
    }
}

/// `s` as a C string (a NUL inside becomes a space).
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}
