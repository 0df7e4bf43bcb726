//! [`Distribute`]: the physical optimizer rule that turns DataFusion's
//! single-process plan for P partitions into an SPMD plan for P
//! participants, with [`ExchangeExec`]s where rows must move.
//!
//! DataFusion plans for `target_partitions = P` over sources with P
//! partitions (participant i's share is partition i). Walking the plan
//! bottom-up, every node's output is one of:
//!
//! - **Distributed**: partition i exists on participant i, and only there;
//! - **Single**: one partition, real on participant 0 only (the others run
//!   the same operators over empty inputs, and their output is discarded);
//! - **Replicated**: one partition, identical on every participant.
//!
//! The rewrite:
//!
//! | DataFusion node | becomes |
//! |---|---|
//! | `RepartitionExec(Hash)` | a hash exchange (Distributed) |
//! | `RepartitionExec(RoundRobin)` over Distributed | removed: shares are already spread |
//! | `RepartitionExec(RoundRobin)` over Single | a round-robin exchange from participant 0 |
//! | `CoalescePartitionsExec` over Distributed | a gather to participant 0 (Single) |
//! | `SortPreservingMergeExec` over Distributed | a gather with an order-preserving merge |
//! | a node that collects one child whole (hash join `CollectLeft`, cross join, nested-loop join) while its other child is Distributed | that child's gather becomes a broadcast (Replicated), or a Single child is broadcast from participant 0 |
//! | a hash join `CollectLeft` that emits build rows at the end (left, full, semi, anti, mark) over a Distributed probe | a partitioned hash join, both sides hash-exchanged on the keys |
//! | an inner hash join `CollectLeft` whose gathered build side is estimated larger than its Distributed probe side | swapped: the probe side broadcast as the build side, the other probing where it was made (`Rewrite::swapping_pays`) |
//! | any other hash join `CollectLeft` over a Distributed probe whose Single build side is estimated large beside its probe side | the same partitioned join, where a broadcast would cost more (`Rewrite::partitioning_pays`) |
//! | a nested-loop join of such a type over a Distributed right side | run whole on participant 0 (right side gathered) |
//! | a scalar subquery's plan (Single, or Distributed: a DISTINCT aggregated by hash) | broadcast: its value is read on every participant |
//! | a shared subplan ([`SharedExec`]) read in several places | rewritten once: every place gets the same exchanges |
//! | an aggregate without GROUP BY over a Single input | run on participant 0 alone ([`LeaderOnlyExec`]): it makes a row of an empty input |
//! | `UnionExec` with a Distributed input | a [`ParticipantUnionExec`] (Distributed): each participant's shares put together, an input whole on participant 0 (or everywhere) first spread from participant 0 (and sorted again, if the union's partitions were sorted) |
//! | a Distributed root | gathered |
//!
//! Shapes it cannot place (mixed inputs elsewhere) are refused with an error naming the node, so that the caller
//! can run the query another way.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::JoinType;
use datafusion::common::{plan_err, Result};
use datafusion::execution::config::SessionConfig;
use datafusion::physical_optimizer::ensure_coop::EnsureCooperative;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning};

use crate::spmd::estimate::estimated_rows;
use crate::spmd::exchange::{ExchangeExec, ExchangeMode, Senders};
use crate::spmd::leader::LeaderOnlyExec;
use crate::spmd::reuse::SharedExec;
use crate::spmd::union::ParticipantUnionExec;
use crate::transport::participant::Participant;

/// A session config for planning SPMD plans for `participants`:
/// target partitions = participants; no join dynamic filters (a
/// partitioned join's filter waits for every partition's build side, and
/// each participant builds only its own); and every hash join whose
/// build side has a size estimate planned to collect it (`CollectLeft`),
/// leaving the choice between broadcasting that side and partitioning both
/// to [`Distribute`], which weighs the rows each moves (DataFusion's own
/// thresholds, 128 thousand rows and 1 MB, weigh only the build side:
/// TPC-H Q5 then partitioned 6 million lineitems to meet 227 thousand
/// orders rows). Add [`Distribute`] as the last
/// physical optimizer rule of the session.
pub fn spmd_config(config: SessionConfig, participants: usize) -> SessionConfig {
    let mut config = config.with_target_partitions(participants);
    let optimizer = &mut config.options_mut().optimizer;
    optimizer.enable_join_dynamic_filter_pushdown = false;
    optimizer.hash_join_single_partition_threshold = usize::MAX;
    optimizer.hash_join_single_partition_threshold_rows = usize::MAX;
    config
}

/// A session config for running SPMD plans as participant `node`: the
/// planning options of [`spmd_config`], and the participant itself as an
/// extension, where exchanges find it.
pub fn participant_config(config: SessionConfig, node: Arc<Participant>) -> SessionConfig {
    spmd_config(config, node.participants() as usize).with_extension(node)
}

/// Where a node's output lives; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    Distributed,
    Single,
    Replicated,
}

/// The rule; add it last to the session's physical optimizer rules.
#[derive(Debug)]
pub struct Distribute {
    participants: usize,
}

impl Distribute {
    /// The rule for `participants` participants.
    pub fn new(participants: usize) -> Distribute {
        Distribute { participants }
    }
}

impl PhysicalOptimizerRule for Distribute {
    fn name(&self) -> &str {
        "WeftDistribute"
    }

    fn schema_check(&self) -> bool {
        true
    }

    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        if self.participants == 1 {
            return Ok(plan); // one participant holds everything: nothing moves
        }
        let mut rewrite = Rewrite {
            participants: self.participants,
            next_id: 0,
            broadcast_rows: BROADCAST_ROWS.min(config.optimizer.hash_join_single_partition_threshold_rows),
            shared: HashMap::new(),
        };
        let (plan, placement) = rewrite.visit(plan)?;
        let plan = match placement {
            Placement::Distributed => rewrite.exchange(
                ExchangeMode::Gather {
                    ordering: None,
                    fetch: None,
                },
                Senders::All,
                plan,
            ),
            Placement::Single | Placement::Replicated => plan,
        };
        // DataFusion left the leaves under its repartitions unwrapped (a
        // repartition is cooperative); under an exchange they must yield,
        // or a busy participant would never see an abort.
        EnsureCooperative::new().optimize(plan, config)
    }
}

/// Whether `plan` yields a row even when its input is empty (an aggregate
/// without GROUP BY): as a Single node, participants other than 0 must
/// not run it ([`LeaderOnlyExec`]).
fn makes_a_row_of_nothing(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<AggregateExec>()
        .is_some_and(|aggregate| aggregate.group_expr().is_empty())
}

/// Build sides estimated at up to this many rows are always broadcast:
/// DataFusion's default limit for collecting a build side whole
/// (`hash_join_single_partition_threshold_rows`).
const BROADCAST_ROWS: usize = 128 * 1024;

struct Rewrite {
    participants: usize,
    /// Exchanges are numbered in the order the walk creates them (children
    /// before parents, left before right): the same plan gives the same
    /// numbers in every process.
    next_id: u32,
    /// Build sides estimated at up to this many rows are always broadcast
    /// ([`BROADCAST_ROWS`], or less if the session's
    /// `hash_join_single_partition_threshold_rows` says so).
    broadcast_rows: usize,
    /// Each shared subplan rewritten so far, by number: its other places
    /// get the same node, so its exchanges are made (and run) once.
    shared: HashMap<u32, (Arc<dyn ExecutionPlan>, Placement)>,
}

impl Rewrite {
    fn exchange(
        &mut self,
        mode: ExchangeMode,
        senders: Senders,
        input: Arc<dyn ExecutionPlan>,
    ) -> Arc<dyn ExecutionPlan> {
        let id = self.next_id;
        self.next_id += 1;
        Arc::new(ExchangeExec::new(id, mode, senders, self.participants, input))
    }

    fn visit(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<(Arc<dyn ExecutionPlan>, Placement)> {
        if let Some(shared) = plan.downcast_ref::<SharedExec>() {
            if let Some(done) = self.shared.get(&shared.id()) {
                return Ok(done.clone());
            }
            let id = shared.id();
            let (input, placement) = self.visit(Arc::clone(shared.children()[0]))?;
            let done = (replace_children_if_necessary(plan, vec![input])?, placement);
            self.shared.insert(id, done.clone());
            return Ok(done);
        }
        let mut children = Vec::new();
        for child in plan.children() {
            children.push(self.visit(Arc::clone(child))?);
        }

        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            let (input, placement) = children.pop().expect("RepartitionExec has one child");
            return Ok(match (repartition.partitioning(), placement) {
                (Partitioning::Hash(keys, _), placement) => {
                    let senders = senders_of(placement);
                    let ordering = input.output_ordering().cloned();
                    let mut exchange = self.exchange(ExchangeMode::Hash(keys.clone()), senders, input);
                    // A repartition that keeps its input's order (of one
                    // partition, or merging) promises it to the nodes
                    // above; rows from several senders no longer have it.
                    if let Some(ordering) = ordering.filter(|_| repartition.maintains_input_order()[0]) {
                        exchange = Arc::new(SortExec::new(ordering, exchange).with_preserve_partitioning(true));
                    }
                    (exchange, Placement::Distributed)
                }
                (Partitioning::RoundRobinBatch(_), Placement::Distributed)
                    if input.output_partitioning().partition_count() == self.participants =>
                {
                    (input, Placement::Distributed)
                }
                (Partitioning::RoundRobinBatch(_), Placement::Single | Placement::Replicated) => {
                    let exchange = self.exchange(ExchangeMode::RoundRobin, Senders::Leader, input);
                    (exchange, Placement::Distributed)
                }
                (other, placement) => {
                    return plan_err!("weft cannot distribute RepartitionExec({other}) over a {placement:?} input")
                }
            });
        }
        if plan.downcast_ref::<CoalescePartitionsExec>().is_some() {
            let (input, placement) = children.pop().expect("CoalescePartitionsExec has one child");
            let fetch = plan.fetch();
            return Ok(match placement {
                Placement::Distributed => (
                    self.exchange(ExchangeMode::Gather { ordering: None, fetch }, Senders::All, input),
                    Placement::Single,
                ),
                other => (replace_children_if_necessary(plan, vec![input])?, other),
            });
        }
        if let Some(merge) = plan.downcast_ref::<SortPreservingMergeExec>() {
            let (input, placement) = children.pop().expect("SortPreservingMergeExec has one child");
            return Ok(match placement {
                Placement::Distributed => {
                    let mode = ExchangeMode::Gather {
                        ordering: Some(merge.expr().clone()),
                        fetch: merge.fetch(),
                    };
                    (self.exchange(mode, Senders::All, input), Placement::Single)
                }
                other => (replace_children_if_necessary(plan, vec![input])?, other),
            });
        }

        if plan.downcast_ref::<UnionExec>().is_some() && children.iter().any(|(_, p)| *p == Placement::Distributed) {
            let mut inputs = Vec::new();
            for (child, placement) in children {
                let mut input = match self.undo_gather(child, placement) {
                    (distributed, Senders::All) => distributed,
                    (whole, Senders::Leader) => self.exchange(ExchangeMode::RoundRobin, Senders::Leader, whole),
                };
                if let Some(ordering) = plan.output_ordering() {
                    // The nodes above count on the union's partitions being
                    // sorted; an input spread from participant 0 no longer is.
                    if !input.equivalence_properties().ordering_satisfy(ordering.clone())? {
                        input = Arc::new(SortExec::new(ordering.clone(), input).with_preserve_partitioning(true));
                    }
                }
                inputs.push(input);
            }
            let union = ParticipantUnionExec::try_new(inputs)?;
            return Ok((Arc::new(union), Placement::Distributed));
        }

        if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
            let (right, right_placement) = children[1].clone();
            let (left, left_placement) = children[0].clone();
            if *join.partition_mode() == PartitionMode::CollectLeft
                && *join.join_type() == JoinType::Inner
                && (left_placement, right_placement) == (Placement::Single, Placement::Distributed)
                && self.swapping_pays(&left, &right)
            {
                if let (distributed, Senders::All) = self.undo_gather(Arc::clone(&left), left_placement) {
                    // The probe side is the smaller: it becomes the build
                    // side, whole on every participant, and the gathered
                    // build side stays where it was made, as the probe.
                    let build = self.exchange(ExchangeMode::Broadcast, Senders::All, right);
                    let unswapped = join.builder().with_new_children(vec![distributed, build])?.build()?;
                    return Ok((
                        unswapped.swap_inputs(PartitionMode::CollectLeft)?,
                        Placement::Distributed,
                    ));
                }
            }
            if *join.partition_mode() == PartitionMode::CollectLeft
                && right_placement == Placement::Distributed
                && (crate::spmd::joins::emits_build_rows_at_end(*join.join_type())
                    || (left_placement == Placement::Single && self.partitioning_pays(&left, &right)))
            {
                // Such a join emits the build side's unmatched (or matched)
                // rows once every probe partition is done, counted within
                // one plan instance; with each participant holding one
                // probe partition that count never completes. A
                // partitioned join needs no shared count. Other joins are
                // partitioned when a broadcast of their build side would
                // cost more (see `partitioning_pays`).
                let (left_input, senders) = self.undo_gather(left, left_placement);
                let left_keys = join.on().iter().map(|(l, _)| Arc::clone(l)).collect();
                let right_keys = join.on().iter().map(|(_, r)| Arc::clone(r)).collect();
                let left = self.exchange(ExchangeMode::Hash(left_keys), senders, left_input);
                let right = self.exchange(ExchangeMode::Hash(right_keys), Senders::All, right);
                let join = join
                    .builder()
                    .with_partition_mode(PartitionMode::Partitioned)
                    .with_new_children(vec![left, right])?
                    .build_exec()?;
                return Ok((join, Placement::Distributed));
            }
        }
        if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() {
            if crate::spmd::joins::emits_build_rows_at_end(*join.join_type()) && children[1].1 == Placement::Distributed
            {
                // No keys to partition on: run it whole on participant 0.
                let (right, _) = children.pop().expect("two children");
                let gathered = self.exchange(
                    ExchangeMode::Gather {
                        ordering: None,
                        fetch: None,
                    },
                    Senders::All,
                    right,
                );
                let (left, _) = children.pop().expect("two children");
                return Ok((
                    replace_children_if_necessary(plan, vec![left, gathered])?,
                    Placement::Single,
                ));
            }
        }

        // Any other node: a leaf takes its place from its partition count;
        // an inner node from its children, after making whole every child
        // it collects whole beside a distributed one.
        if children.is_empty() {
            let partitions = plan.output_partitioning().partition_count();
            let placement = if partitions == self.participants {
                Placement::Distributed
            } else if partitions == 1 {
                // Constants (VALUES, an empty relation): the same everywhere.
                Placement::Replicated
            } else {
                return plan_err!(
                    "weft cannot distribute {} with {partitions} partitions among {} participants",
                    plan.name(),
                    self.participants
                );
            };
            return Ok((plan, placement));
        }
        if plan.downcast_ref::<ScalarSubqueryExec>().is_some() {
            // Subquery values are read by operators anywhere below the main
            // input (a filter on every participant's share): every
            // participant needs them, not just participant 0. A subquery
            // whose rows are spread among the participants (a SELECT
            // DISTINCT, aggregated by hash) is broadcast by all of them:
            // ScalarSubqueryExec reads every partition of its subquery, and
            // a participant may execute only its own.
            for (child, placement) in children.iter_mut().skip(1) {
                match *placement {
                    Placement::Single => *child = self.replicate(Arc::clone(child)),
                    Placement::Distributed => {
                        *child = self.exchange(ExchangeMode::Broadcast, Senders::All, Arc::clone(child))
                    }
                    Placement::Replicated => {}
                }
                *placement = Placement::Replicated;
            }
            let (main, placement) = children.remove(0);
            let mut inputs = vec![main];
            inputs.extend(children.into_iter().map(|(child, _)| child));
            return Ok((replace_children_if_necessary(plan, inputs)?, placement));
        }
        let any_distributed = children.iter().any(|(_, p)| *p == Placement::Distributed);
        if any_distributed {
            for (i, requirement) in plan
                .input_distribution_requirements()
                .into_per_child()
                .iter()
                .enumerate()
            {
                if !matches!(requirement, Distribution::SinglePartition) || i >= children.len() {
                    continue;
                }
                let (child, placement) = children[i].clone();
                children[i] = match placement {
                    Placement::Replicated => (child, placement),
                    Placement::Single => (self.replicate(child), Placement::Replicated),
                    Placement::Distributed => {
                        return plan_err!("weft: {} needs child {i} whole, but it is distributed", plan.name())
                    }
                };
            }
        }
        let placements: Vec<Placement> = children.iter().map(|(_, p)| *p).collect();
        let placement = if placements.contains(&Placement::Distributed) {
            if placements.contains(&Placement::Single) {
                return plan_err!("weft cannot distribute {}: distributed and single inputs", plan.name());
            }
            Placement::Distributed
        } else if placements.contains(&Placement::Single) {
            Placement::Single
        } else {
            Placement::Replicated
        };
        let inputs = children.into_iter().map(|(child, _)| child).collect();
        let plan = replace_children_if_necessary(plan, inputs)?;
        let partitions = plan.output_partitioning().partition_count();
        if placement == Placement::Distributed && partitions != self.participants {
            return plan_err!(
                "weft cannot distribute {}: {partitions} output partitions for {} participants",
                plan.name(),
                self.participants
            );
        }
        if placement == Placement::Single && makes_a_row_of_nothing(&plan) {
            return Ok((Arc::new(LeaderOnlyExec::new(plan)), placement));
        }
        Ok((plan, placement))
    }

    /// The distributed rows behind a Single child: the input of the gather
    /// that made it (which is dropped), or the child itself, sent by the
    /// leader only.
    fn undo_gather(
        &mut self,
        child: Arc<dyn ExecutionPlan>,
        placement: Placement,
    ) -> (Arc<dyn ExecutionPlan>, Senders) {
        if let Some(exchange) = child.downcast_ref::<ExchangeExec>() {
            if let (
                ExchangeMode::Gather {
                    ordering: None,
                    fetch: None,
                },
                Senders::All,
            ) = (exchange.mode(), exchange.senders())
            {
                return (Arc::clone(exchange.children()[0]), Senders::All);
            }
        }
        (child, senders_of(placement))
    }

    /// Whether a `CollectLeft` hash join with a Single build side `left`
    /// and a Distributed probe side `right` is better run partitioned,
    /// both sides hash-exchanged on the keys, than with its build side
    /// broadcast.
    ///
    /// Broadcasting B build rows moves each to the P - 1 other
    /// participants and has every participant build a table of all B;
    /// partitioning moves (B + R) (P - 1) / P rows, R the probe side's, and
    /// each participant builds B / P. Counting a row moved as twice a row
    /// built (a moved row is hashed, encoded, copied through a ring and
    /// decoded; a built row is hashed and inserted), partitioning pays when
    /// 2R < (3P - 2) B. (Counted alike, R < (2P - 1) B, which partitions
    /// TPC-H Q21's 736 thousand orders through weft.query to meet 2
    /// million lineitems, slower than broadcasting them.) DataFusion
    /// collects build sides whole in one process, where that costs one
    /// table: for TPC-H Q21 it collects 3.8 million rows, which broadcast
    /// to two participants, each building their table, cost far more
    /// than in DataFusion. Small build sides (at most `broadcast_rows`)
    /// and build sides of unknown size stay broadcast, as DataFusion
    /// planned them.
    fn partitioning_pays(&self, left: &Arc<dyn ExecutionPlan>, right: &Arc<dyn ExecutionPlan>) -> bool {
        let Some((build, probe)) = join_sides_rows(left, right) else {
            return false;
        };
        self.partitioning_pays_rows(build, probe)
    }

    /// [`Rewrite::partitioning_pays`] for `build` and `probe` rows.
    fn partitioning_pays_rows(&self, build: usize, probe: usize) -> bool {
        let p = self.participants;
        build > self.broadcast_rows && probe.saturating_mul(2) < (3 * p - 2).saturating_mul(build)
    }

    /// Whether an inner `CollectLeft` hash join with a Single build side
    /// `left` (gathered) and a Distributed probe side `right` is better run
    /// the other way round: `right` broadcast as the build side, `left`
    /// probing where it was made.
    ///
    /// DataFusion builds on the side it estimates smaller, but its
    /// estimate of a join is often far too small (see [`estimated_rows`]):
    /// in TPC-H Q8 it built on 180 thousand rows of orders joined to
    /// lineitem, which weft then gathered and broadcast, to probe with 730
    /// parts. Swapping pays when the probe side moved to every other
    /// participant, R (P - 1) rows, is less than the build side, and the
    /// swapped join would not be partitioned anyway.
    fn swapping_pays(&self, left: &Arc<dyn ExecutionPlan>, right: &Arc<dyn ExecutionPlan>) -> bool {
        let Some((build, probe)) = join_sides_rows(left, right) else {
            return false;
        };
        probe.saturating_mul(self.participants - 1) < build && !self.partitioning_pays_rows(probe, build)
    }

    /// Makes a Single subplan whole on every participant: a gather that
    /// produced it becomes a broadcast of the same rows; anything else is
    /// broadcast from participant 0.
    fn replicate(&mut self, child: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        if let Some(exchange) = child.downcast_ref::<ExchangeExec>() {
            if let ExchangeMode::Gather {
                ordering: None,
                fetch: None,
            } = exchange.mode()
            {
                let input = Arc::clone(exchange.children()[0]);
                return Arc::new(ExchangeExec::new(
                    exchange.id(),
                    ExchangeMode::Broadcast,
                    exchange.senders(),
                    self.participants,
                    input,
                ));
            }
        }
        self.exchange(ExchangeMode::Broadcast, Senders::Leader, child)
    }
}

/// The estimated rows of a hash join's build side `left` (before the
/// gather that made it Single, if one did) and its probe side `right`.
fn join_sides_rows(left: &Arc<dyn ExecutionPlan>, right: &Arc<dyn ExecutionPlan>) -> Option<(usize, usize)> {
    let build = match left.downcast_ref::<ExchangeExec>() {
        Some(gather) if matches!(gather.mode(), ExchangeMode::Gather { .. }) => estimated_rows(gather.children()[0]),
        _ => estimated_rows(left),
    };
    Some((build?, estimated_rows(right)?))
}

fn senders_of(placement: Placement) -> Senders {
    match placement {
        Placement::Distributed => Senders::All,
        Placement::Single | Placement::Replicated => Senders::Leader,
    }
}
