//! Plan shipping: the leader plans once and every participant runs the
//! very plan it made.
//!
//! [`PlanCodec`] turns an SPMD physical plan into bytes with
//! datafusion-proto, and back in each participant. DataFusion's own nodes
//! and expressions go through datafusion-proto; [`ExchangeExec`] through
//! weft's extension message below (as do [`SharedExec`],
//! [`LeaderOnlyExec`] and [`ParticipantUnionExec`]); and every other node (the sources:
//! in-memory tables in tests, heap scans in pgext) through a pluggable
//! source codec, an ordinary [`PhysicalExtensionCodec`] supplied by the
//! caller.
//!
//! An exchange's number travels with it, so every participant uses the
//! same rings for it; [`PlanCodec::decode`] checks that the numbers are
//! distinct and fit the mesh, and that the plan was made for as many
//! participants as run it. A [`SharedExec`] travels as its number, its
//! consumer count and its subtree, once per place it is read; decoding
//! gives the places of one number one shared state (and one run).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_err, internal_datafusion_err, plan_err, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::from_proto::parse_physical_sort_exprs;
use datafusion_proto::physical_plan::to_proto::{serialize_physical_exprs, serialize_physical_sort_exprs};
use datafusion_proto::physical_plan::{
    AsExecutionPlan, PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{PhysicalExprNode, PhysicalPlanNode, PhysicalSortExprNode};
use prost::Message;

use crate::spmd::exchange::{ExchangeExec, ExchangeMode, Senders};
use crate::spmd::leader::LeaderOnlyExec;
use crate::spmd::reuse::{PlanBytes, SharedExec, SharedState};
use crate::spmd::union::ParticipantUnionExec;
use crate::transport::participant::Participant;

/// Encodes SPMD plans on the leader and decodes them in participants; see
/// the module docs.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::physical_plan::empty::EmptyExec;
/// # use datafusion::arrow::datatypes::Schema;
/// # use datafusion::execution::TaskContext;
/// # use datafusion_proto::physical_plan::DefaultPhysicalExtensionCodec;
/// use weft_runtime::PlanCodec;
///
/// let codec = PlanCodec::new(Arc::new(DefaultPhysicalExtensionCodec {}));
/// let plan = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
/// let bytes = codec.encode(plan).unwrap();
/// let back = codec.decode(&bytes, &TaskContext::default()).unwrap();
/// assert_eq!(back.name(), "EmptyExec");
/// ```
#[derive(Clone)]
pub struct PlanCodec {
    inner: Arc<WeftCodec>,
}

impl PlanCodec {
    /// A codec whose non-weft, non-DataFusion nodes go through `sources`.
    pub fn new(sources: Arc<dyn PhysicalExtensionCodec>) -> PlanCodec {
        PlanCodec {
            inner: Arc::new(WeftCodec::new(sources)),
        }
    }

    /// `plan` as bytes.
    pub fn encode(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
        let node = PhysicalPlanNode::try_from_physical_plan(plan, self.inner.as_ref())?;
        Ok(node.encode_to_vec())
    }

    /// The plan in `bytes`, rebuilt for execution under `ctx`. When `ctx`
    /// belongs to a participant (see [`crate::participant_config`]), the plan's
    /// exchanges are checked against its mesh.
    pub fn decode(&self, bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
        let node = PhysicalPlanNode::decode(bytes).map_err(|e| internal_datafusion_err!("weft plan: {e}"))?;
        // Shared states are per decoded plan: a codec with an empty registry.
        let codec = WeftCodec::new(Arc::clone(&self.inner.sources));
        let plan = node.try_into_physical_plan(ctx, &codec)?;
        if let Some(participant) = ctx.session_config().get_extension::<Participant>() {
            check_exchanges(&plan, &participant)?;
        }
        Ok(plan)
    }
}

impl fmt::Debug for PlanCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanCodec")
            .field("sources", &self.inner.sources)
            .finish()
    }
}

/// How many exchanges a mesh needs to run `plan`: one more than its
/// largest exchange number (0 for a plan without exchanges). The leader
/// sizes the query's mesh with it: every exchange's rings cost ring
/// memory, so a mesh sized for the plan rather than for the largest plan
/// imaginable is both smaller and quicker to set up.
///
/// ```
/// # use std::sync::Arc;
/// # use datafusion::physical_plan::empty::EmptyExec;
/// # use datafusion::arrow::datatypes::Schema;
/// let plan: Arc<dyn datafusion::physical_plan::ExecutionPlan> = Arc::new(EmptyExec::new(Arc::new(Schema::empty())));
/// assert_eq!(weft_runtime::exchange_count(&plan), 0);
/// ```
pub fn exchange_count(plan: &Arc<dyn ExecutionPlan>) -> u32 {
    let mut count = 0;
    plan.apply(|node| {
        if let Some(exchange) = node.downcast_ref::<ExchangeExec>() {
            count = count.max(exchange.id() + 1);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the visitor never fails");
    count
}

/// Distinct exchange numbers within the mesh, all planned for its
/// participant count: a plan that breaks these would cross rings.
fn check_exchanges(plan: &Arc<dyn ExecutionPlan>, participant: &Participant) -> Result<()> {
    let mut seen = BTreeSet::new();
    let mut shared = BTreeSet::new();
    let mut problem = None;
    plan.apply(|node| {
        if let Some(node) = node.downcast_ref::<SharedExec>() {
            // Its other places hold the same exchanges, run once.
            if !shared.insert(node.id()) {
                return Ok(TreeNodeRecursion::Jump);
            }
        }
        if let Some(exchange) = node.downcast_ref::<ExchangeExec>() {
            if exchange.participants() != participant.participants() as usize {
                problem = Some(format!(
                    "exchange {} was planned for {} participants, but {} run it",
                    exchange.id(),
                    exchange.participants(),
                    participant.participants()
                ));
            } else if exchange.id() >= participant.mesh().layout().exchanges() {
                problem = Some(format!(
                    "exchange {} does not fit a mesh of {} exchanges",
                    exchange.id(),
                    participant.mesh().layout().exchanges()
                ));
            } else if !seen.insert(exchange.id()) {
                problem = Some(format!("exchange {} appears twice", exchange.id()));
            }
            if problem.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match problem {
        Some(problem) => plan_err!("weft plan does not fit this mesh: {problem}"),
        None => Ok(()),
    }
}

/// The extension codec proper: exchanges here, everything else to the
/// source codec.
#[derive(Debug)]
struct WeftCodec {
    sources: Arc<dyn PhysicalExtensionCodec>,
    /// The shared states decoded so far, by [`SharedExec`] number (empty
    /// when encoding).
    shared: Mutex<HashMap<u32, Arc<SharedState>>>,
}

impl WeftCodec {
    fn new(sources: Arc<dyn PhysicalExtensionCodec>) -> WeftCodec {
        WeftCodec {
            sources,
            shared: Mutex::default(),
        }
    }
}

/// A weft extension node as datafusion-proto carries it (its inputs travel
/// beside it, in the enclosing `PhysicalExtensionNode`).
#[derive(Clone, PartialEq, Message)]
struct ExtensionNode {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(message, tag = "1")]
    Exchange(ExchangeNode),
    /// Whatever the source codec wrote.
    #[prost(bytes, tag = "2")]
    Source(Vec<u8>),
    #[prost(message, tag = "3")]
    Shared(SharedNode),
    /// A [`LeaderOnlyExec`]: nothing to say but its kind.
    #[prost(message, tag = "4")]
    LeaderOnly(LeaderOnlyNode),
    /// A [`ParticipantUnionExec`]: its inputs say it all.
    #[prost(message, tag = "5")]
    Union(UnionNode),
}

#[derive(Clone, PartialEq, Message)]
struct LeaderOnlyNode {}

#[derive(Clone, PartialEq, Message)]
struct UnionNode {}

#[derive(Clone, PartialEq, Message)]
struct SharedNode {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(uint32, tag = "2")]
    consumers: u32,
}

#[derive(Clone, PartialEq, Message)]
struct ExchangeNode {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(enumeration = "Mode", tag = "2")]
    mode: i32,
    #[prost(bool, tag = "3")]
    leader_only: bool,
    #[prost(uint32, tag = "4")]
    participants: u32,
    /// Hash keys (mode hash).
    #[prost(message, repeated, tag = "5")]
    keys: Vec<PhysicalExprNode>,
    /// Merge order (mode gather; empty: no merge).
    #[prost(message, repeated, tag = "6")]
    ordering: Vec<PhysicalSortExprNode>,
    /// Row limit (mode gather).
    #[prost(uint64, optional, tag = "7")]
    fetch: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
enum Mode {
    Hash = 0,
    Gather = 1,
    Broadcast = 2,
    RoundRobin = 3,
}

impl PhysicalExtensionCodec for WeftCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = ExtensionNode::decode(buf).map_err(|e| internal_datafusion_err!("weft plan node: {e}"))?;
        let exchange = match node.kind {
            Some(Kind::Exchange(exchange)) => exchange,
            Some(Kind::Source(source)) => return self.sources.try_decode(&source, inputs, ctx, converter),
            Some(Kind::Shared(shared)) => {
                let [input] = inputs else {
                    return exec_err!("weft shared subplan {} with {} inputs", shared.id, inputs.len());
                };
                let state = Arc::clone(
                    self.shared
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .entry(shared.id)
                        .or_default(),
                );
                return Ok(Arc::new(SharedExec::with_state(
                    shared.id,
                    shared.consumers as usize,
                    Arc::clone(input),
                    state,
                )));
            }
            Some(Kind::LeaderOnly(LeaderOnlyNode {})) => {
                let [input] = inputs else {
                    return exec_err!("weft leader-only node with {} inputs", inputs.len());
                };
                return Ok(Arc::new(LeaderOnlyExec::new(Arc::clone(input))));
            }
            Some(Kind::Union(UnionNode {})) => return Ok(Arc::new(ParticipantUnionExec::try_new(inputs.to_vec())?)),
            None => return exec_err!("weft plan node of unknown kind"),
        };
        let [input] = inputs else {
            return exec_err!("weft exchange {} with {} inputs", exchange.id, inputs.len());
        };
        let schema = input.schema();
        let decode = PhysicalPlanDecodeContext::new(ctx, self);
        let mode = match Mode::try_from(exchange.mode) {
            Ok(Mode::Hash) => ExchangeMode::Hash(
                exchange
                    .keys
                    .iter()
                    .map(|key| converter.proto_to_physical_expr(key, &schema, &decode))
                    .collect::<Result<_>>()?,
            ),
            Ok(Mode::Gather) => ExchangeMode::Gather {
                ordering: LexOrdering::new(parse_physical_sort_exprs(
                    &exchange.ordering,
                    &decode,
                    &schema,
                    converter,
                )?),
                fetch: exchange.fetch.map(|fetch| fetch as usize),
            },
            Ok(Mode::Broadcast) => ExchangeMode::Broadcast,
            Ok(Mode::RoundRobin) => ExchangeMode::RoundRobin,
            Err(_) => return exec_err!("weft exchange {} of unknown mode {}", exchange.id, exchange.mode),
        };
        let senders = if exchange.leader_only {
            Senders::Leader
        } else {
            Senders::All
        };
        Ok(Arc::new(ExchangeExec::new(
            exchange.id,
            mode,
            senders,
            exchange.participants as usize,
            Arc::clone(input),
        )))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(shared) = node.downcast_ref::<SharedExec>() {
            let node = ExtensionNode {
                kind: Some(Kind::Shared(SharedNode {
                    id: shared.id(),
                    consumers: shared.consumers() as u32,
                })),
            };
            return node
                .encode(buf)
                .map_err(|e| internal_datafusion_err!("weft plan node: {e}"));
        }
        let kind = if node.downcast_ref::<LeaderOnlyExec>().is_some() {
            Some(Kind::LeaderOnly(LeaderOnlyNode {}))
        } else if node.downcast_ref::<ParticipantUnionExec>().is_some() {
            Some(Kind::Union(UnionNode {}))
        } else {
            None
        };
        if let Some(kind) = kind {
            return ExtensionNode { kind: Some(kind) }
                .encode(buf)
                .map_err(|e| internal_datafusion_err!("weft plan node: {e}"));
        }
        let Some(exchange) = node.downcast_ref::<ExchangeExec>() else {
            let mut source = Vec::new();
            self.sources.try_encode(node, &mut source, converter)?;
            let node = ExtensionNode {
                kind: Some(Kind::Source(source)),
            };
            node.encode(buf)
                .map_err(|e| internal_datafusion_err!("weft plan node: {e}"))?;
            return Ok(());
        };
        let mut message = ExchangeNode {
            id: exchange.id(),
            mode: 0,
            leader_only: exchange.senders() == Senders::Leader,
            participants: exchange.participants() as u32,
            keys: Vec::new(),
            ordering: Vec::new(),
            fetch: None,
        };
        let mode = match exchange.mode() {
            ExchangeMode::Hash(keys) => {
                message.keys = serialize_physical_exprs(keys, self, converter)?;
                Mode::Hash
            }
            ExchangeMode::Gather { ordering, fetch } => {
                if let Some(ordering) = ordering {
                    message.ordering = serialize_physical_sort_exprs(ordering.iter().cloned(), self, converter)?;
                }
                message.fetch = fetch.map(|fetch| fetch as u64);
                Mode::Gather
            }
            ExchangeMode::Broadcast => Mode::Broadcast,
            ExchangeMode::RoundRobin => Mode::RoundRobin,
        };
        message.mode = mode as i32;
        let node = ExtensionNode {
            kind: Some(Kind::Exchange(message)),
        };
        node.encode(buf)
            .map_err(|e| internal_datafusion_err!("weft plan node: {e}"))
    }

    // Functions DataFusion does not know by name are the source codec's
    // (pgext's Postgres-semantics functions, for instance).

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.sources.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.sources.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.sources.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.sources.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.sources.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.sources.try_encode_udwf(node, buf)
    }
}

impl PlanBytes for PlanCodec {
    fn bytes(&self, plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<u8>> {
        self.encode(Arc::clone(plan)).ok()
    }
}
