//! [`HeapCodec`]: weft's scans in a shipped plan. The leader encodes each
//! [`HeapScanExec`](crate::plan::scan::HeapScanExec) with its scan slot
//! number; every participant decodes it bound to its own opened relation
//! and the scan's shared state ([`crate::storage::stream::ScanBinding`]).

use std::sync::Arc;

use datafusion::common::{exec_err, internal_datafusion_err, DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::from_proto::parse_expr;
use datafusion_proto::logical_plan::to_proto::serialize_expr;
use datafusion_proto::logical_plan::DefaultLogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::LogicalExprNode;
use pgrx::pg_sys;
use prost::Message;

use crate::pgcall;
use crate::plan::bridge::{Fold, PgCall, PgFold, PgFunction};
use crate::plan::collate;
use crate::plan::scan::{Filtered, HeapScanExec, Lookup, ScanColumn, ScanTarget};
use crate::plan::scan::{Keys, LookupIndex};
use crate::storage::stream::ScanBinding;
use crate::types::PgType;

/// A [`HeapScanExec`] in a shipped plan.
#[derive(Clone, PartialEq, Message)]
struct ScanNode {
    #[prost(uint32, tag = "1")]
    relid: u32,
    #[prost(uint32, tag = "2")]
    relfilenode: u32,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(uint32, tag = "4")]
    slot: u32,
    #[prost(uint32, tag = "5")]
    partitions: u32,
    #[prost(double, optional, tag = "6")]
    rows: Option<f64>,
    #[prost(message, repeated, tag = "7")]
    columns: Vec<ColumnNode>,
    /// The filter's conjuncts, each a datafusion-proto LogicalExprNode.
    #[prost(bytes = "vec", repeated, tag = "8")]
    filters: Vec<Vec<u8>>,
    /// The columns the filter reads, in input order.
    #[prost(message, repeated, tag = "9")]
    inputs: Vec<ColumnNode>,
    /// Postgres's estimate of the rows the filter keeps (for EXPLAIN).
    #[prost(double, optional, tag = "10")]
    filtered_rows: Option<f64>,
    /// Set for an index lookup scan.
    #[prost(message, optional, tag = "11")]
    lookup: Option<LookupNode>,
}

/// A scan's [`Lookup`] in a shipped plan (its keys are linked after
/// decoding).
#[derive(Clone, PartialEq, Message)]
struct LookupNode {
    #[prost(uint32, tag = "1")]
    column: u32,
    #[prost(int32, tag = "2")]
    attnum: i32,
    #[prost(uint32, tag = "3")]
    index: u32,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(double, tag = "5")]
    rows_per_key: f64,
    #[prost(double, tag = "6")]
    rows: f64,
    #[prost(bool, tag = "7")]
    first_match: bool,
    /// The keys divided among the participants ([`Keys::Divided`]).
    #[prost(bool, tag = "8")]
    divided: bool,
    #[prost(uint64, optional, tag = "9")]
    max_keys: Option<u64>,
}

impl ColumnNode {
    fn new(c: &ScanColumn) -> ColumnNode {
        ColumnNode {
            attnum: i32::from(c.attnum),
            name: c.name.clone(),
            typid: c.typid.to_u32(),
            typmod: c.typmod,
            nullable: c.nullable,
        }
    }

    fn decode(self) -> Result<ScanColumn> {
        let typid = pg_sys::Oid::from(self.typid);
        let ty = PgType::of(typid, self.typmod).map_err(DataFusionError::Execution)?;
        let attnum = i16::try_from(self.attnum).ok().filter(|a| *a > 0);
        let Some(attnum) = attnum else {
            return exec_err!("weft: a shipped scan names attribute {}", self.attnum);
        };
        Ok(ScanColumn {
            attnum,
            name: self.name,
            typid,
            typmod: self.typmod,
            ty,
            nullable: self.nullable,
            distinct: None,
        })
    }
}

#[derive(Clone, PartialEq, Message)]
struct ColumnNode {
    #[prost(int32, tag = "1")]
    attnum: i32,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(uint32, tag = "3")]
    typid: u32,
    #[prost(int32, tag = "4")]
    typmod: i32,
    #[prost(bool, tag = "5")]
    nullable: bool,
}

/// A shipped scan's slot: the relation it must read, as the leader saw it.
#[derive(Clone, Copy, Debug)]
pub struct SlotTarget {
    /// The relation.
    pub relid: pg_sys::Oid,
    /// Its storage's number when the leader planned.
    pub relfilenode: u32,
}

/// The sources' codec: encodes [`HeapScanExec`]s; decodes them bound to
/// this participant's `bindings` (by slot).
#[derive(Debug, Default)]
pub struct HeapCodec {
    bindings: Vec<(SlotTarget, ScanBinding)>,
    /// Scans without a slot encode as slot 0 (for comparing plans, not
    /// shipping them).
    unslotted: bool,
}

impl HeapCodec {
    /// A codec that binds decoded scans to `bindings`, slot i to entry i.
    pub fn new(bindings: Vec<(SlotTarget, ScanBinding)>) -> HeapCodec {
        HeapCodec {
            bindings,
            unslotted: false,
        }
    }

    /// A codec for comparing plans before their scans have slots
    /// ([`weft_runtime::ShareRepeated`]: two scans are the same when they
    /// read the same columns of the same relation the same way); what it
    /// encodes is never shipped.
    pub fn comparing() -> HeapCodec {
        HeapCodec {
            bindings: Vec::new(),
            unslotted: true,
        }
    }
}

/// The first byte of a shipped function's bytes: which of weft's kinds of
/// function the rest encodes (names alone may collide: a bridged
/// function is named after whatever Postgres function it calls).
const BRIDGED: u8 = 1;
const COLLATED: u8 = 2;

impl PhysicalExtensionCodec for HeapCodec {
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(function) = node.inner().downcast_ref::<PgFunction>() {
            buf.push(BRIDGED);
            buf.extend(function.call().encode());
        } else if let Some(bytes) = collate::encode_scalar(node) {
            buf.push(COLLATED);
            buf.extend(bytes);
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match buf.split_first() {
            Some((&COLLATED, bytes)) => collate::decode_scalar(name, bytes)
                .unwrap_or_else(|| exec_err!("weft: no text comparison {name} to decode")),
            Some((&BRIDGED, bytes)) => {
                let call = PgCall::decode(bytes)?;
                let function = pgcall::call("a Postgres function's lookup", || {
                    // SAFETY: a participant decodes its plan on its backend
                    // thread.
                    unsafe { PgFunction::new(call) }.map_err(DataFusionError::Execution)
                })?;
                Ok(Arc::new(ScalarUDF::new_from_impl(function)))
            }
            _ => exec_err!("weft: no function {name} to decode"),
        }
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(fold) = node.inner().downcast_ref::<PgFold>() {
            buf.push(BRIDGED);
            buf.extend(fold.fold().encode());
        } else if let Some(bytes) = collate::encode_aggregate(node) {
            buf.push(COLLATED);
            buf.extend(bytes);
        }
        Ok(())
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match buf.split_first() {
            Some((&COLLATED, bytes)) => collate::decode_aggregate(name, bytes)
                .unwrap_or_else(|| exec_err!("weft: no text aggregate {name} to decode")),
            Some((&BRIDGED, bytes)) => {
                let fold = Fold::decode(bytes)?;
                let aggregate = pgcall::call("a Postgres aggregate's lookup", || {
                    // SAFETY: decoding runs on the participant's backend
                    // thread, inside pgcall::call.
                    unsafe { PgFold::new(fold) }.map_err(DataFusionError::Execution)
                })?;
                Ok(Arc::new(AggregateUDF::new_from_impl(aggregate)))
            }
            _ => exec_err!("weft: no aggregate {name} to decode"),
        }
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(bytes) = collate::encode_window(node) {
            buf.extend(bytes);
        }
        Ok(())
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        collate::decode_window(name, buf).unwrap_or_else(|| exec_err!("weft: no window function {name} to decode"))
    }

    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = ScanNode::decode(buf).map_err(|e| internal_datafusion_err!("weft heap scan node: {e}"))?;
        let Some((target, binding)) = self.bindings.get(node.slot as usize) else {
            return exec_err!("weft: a shipped scan names slot {}, which the section lacks", node.slot);
        };
        if target.relid.to_u32() != node.relid || target.relfilenode != node.relfilenode {
            return exec_err!(
                "weft: the shipped scan of {} does not match its slot's relation",
                node.name
            );
        }
        let columns = node
            .columns
            .into_iter()
            .map(ColumnNode::decode)
            .collect::<Result<Vec<_>>>()?;
        let filter = match node.filters.is_empty() {
            true => None,
            false => {
                let exprs = node
                    .filters
                    .iter()
                    .map(|bytes| {
                        let proto = LogicalExprNode::decode(bytes.as_slice())
                            .map_err(|e| internal_datafusion_err!("weft scan filter: {e}"))?;
                        parse_expr(&proto, ctx, &DefaultLogicalExtensionCodec {})
                            .map_err(|e| internal_datafusion_err!("weft scan filter: {e}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let inputs = node
                    .inputs
                    .into_iter()
                    .map(ColumnNode::decode)
                    .collect::<Result<Vec<_>>>()?;
                Some(Filtered::new(exprs, inputs).map_err(DataFusionError::Execution)?)
            }
        };
        let scan = HeapScanExec::new(
            ScanTarget {
                relid: pg_sys::Oid::from(node.relid),
                relfilenode: node.relfilenode,
                name: node.name,
            },
            columns,
            filter,
            node.partitions as usize,
            node.rows,
            Some(node.slot),
            Some(*binding),
        );
        let lookup = match node.lookup {
            None => None,
            Some(l) => {
                let column = l.column as usize;
                let attnum = i16::try_from(l.attnum).ok();
                if scan.columns.get(column).map(|c| Some(c.attnum)) != Some(attnum) {
                    return exec_err!(
                        "weft: the shipped index lookup of {} names a column it does not read",
                        scan.target.name
                    );
                }
                Some(Lookup {
                    column,
                    index: LookupIndex {
                        attnum: attnum.unwrap_or_default(),
                        index: pg_sys::Oid::from(l.index),
                        name: l.name,
                        rows_per_key: l.rows_per_key,
                    },
                    rows: l.rows,
                    share: 1.0,
                    keys: if l.divided { Keys::Divided } else { Keys::Own },
                    first_match: l.first_match,
                    max_keys: l.max_keys,
                    slot: None,
                })
            }
        };
        Ok(Arc::new(HeapScanExec {
            filtered_rows: node.filtered_rows,
            lookup,
            ..scan
        }))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<HeapScanExec>() else {
            return exec_err!("weft cannot ship {}", node.name());
        };
        let Some(slot) = scan.slot.or(self.unslotted.then_some(0)) else {
            return exec_err!("weft: the scan of {} has no slot", scan.target.name);
        };
        let message = ScanNode {
            relid: scan.target.relid.to_u32(),
            relfilenode: scan.target.relfilenode,
            name: scan.target.name.clone(),
            slot,
            partitions: scan.partitions as u32,
            rows: scan.rows,
            filtered_rows: scan.filtered_rows,
            lookup: scan.lookup.as_ref().map(|l| LookupNode {
                column: l.column as u32,
                attnum: i32::from(l.index.attnum),
                index: l.index.index.to_u32(),
                name: l.index.name.clone(),
                rows_per_key: l.index.rows_per_key,
                rows: l.rows,
                first_match: l.first_match,
                divided: l.keys == Keys::Divided,
                max_keys: l.max_keys,
            }),
            columns: scan.columns.iter().map(ColumnNode::new).collect(),
            filters: match &scan.filter {
                None => Vec::new(),
                Some(f) => f
                    .filter
                    .exprs
                    .iter()
                    .map(|e| {
                        serialize_expr(e, &DefaultLogicalExtensionCodec {})
                            .map(|proto| proto.encode_to_vec())
                            .map_err(|e| internal_datafusion_err!("weft scan filter: {e}"))
                    })
                    .collect::<Result<Vec<_>>>()?,
            },
            inputs: scan
                .filter
                .iter()
                .flat_map(|f| f.inputs.iter().map(ColumnNode::new))
                .collect(),
        };
        message
            .encode(buf)
            .map_err(|e| internal_datafusion_err!("weft heap scan node: {e}"))
    }
}
