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
//! | a nested-loop join of such a type over a Distributed right side | run whole on participant 0 (right side gathered) |
//! | a scalar subquery's plan (Single) | broadcast: its value is read on every participant |
//! | a Distributed root | gathered |
//!
//! Shapes it cannot place (a union of distributed inputs, mixed inputs
//! elsewhere) are refused with an error naming the node, so that the caller
//! can run the query another way.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::JoinType;
use datafusion::common::{plan_err, Result};
use datafusion::execution::config::SessionConfig;
use datafusion::physical_optimizer::ensure_coop::EnsureCooperative;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::scalar_subquery::ScalarSubqueryExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{Distribution, ExecutionPlan, ExecutionPlanProperties, Partitioning};

use crate::exchange::{ExchangeExec, ExchangeMode, Senders};
use crate::participant::Participant;

/// A session config for planning SPMD plans for `participants`:
/// target partitions = participants, and no join dynamic filters (a
/// partitioned join's filter waits for every partition's build side, and
/// each participant builds only its own). Add [`Distribute`] as the last
/// physical optimizer rule of the session.
pub fn spmd_config(config: SessionConfig, participants: usize) -> SessionConfig {
    let mut config = config.with_target_partitions(participants);
    config.options_mut().optimizer.enable_join_dynamic_filter_pushdown = false;
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

struct Rewrite {
    participants: usize,
    /// Exchanges are numbered in the order the walk creates them (children
    /// before parents, left before right): the same plan gives the same
    /// numbers in every process.
    next_id: u32,
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
        let mut children = Vec::new();
        for child in plan.children() {
            children.push(self.visit(Arc::clone(child))?);
        }

        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            let (input, placement) = children.pop().expect("RepartitionExec has one child");
            return Ok(match (repartition.partitioning(), placement) {
                (Partitioning::Hash(keys, _), placement) => {
                    let senders = senders_of(placement);
                    let exchange = self.exchange(ExchangeMode::Hash(keys.clone()), senders, input);
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

        if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
            let (right, right_placement) = children[1].clone();
            if *join.partition_mode() == PartitionMode::CollectLeft
                && emits_build_rows_at_end(*join.join_type())
                && right_placement == Placement::Distributed
            {
                // Such a join emits the build side's unmatched (or matched)
                // rows once every probe partition is done, counted within
                // one plan instance; with each participant holding one
                // probe partition that count never completes. A
                // partitioned join needs no shared count.
                let (left, left_placement) = children[0].clone();
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
            if emits_build_rows_at_end(*join.join_type()) && children[1].1 == Placement::Distributed {
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
            // participant needs them, not just participant 0.
            for (child, placement) in children.iter_mut().skip(1) {
                if *placement == Placement::Single {
                    *child = self.replicate(Arc::clone(child));
                    *placement = Placement::Replicated;
                }
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
            if plan.output_partitioning().partition_count() != self.participants {
                return plan_err!(
                    "weft cannot distribute {}: {} output partitions for {} participants",
                    plan.name(),
                    plan.output_partitioning().partition_count(),
                    self.participants
                );
            }
            Placement::Distributed
        } else if placements.contains(&Placement::Single) {
            Placement::Single
        } else {
            Placement::Replicated
        };
        let inputs = children.into_iter().map(|(child, _)| child).collect();
        Ok((replace_children_if_necessary(plan, inputs)?, placement))
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

/// Join types that, with the build side collected whole, emit build rows
/// after the last probe partition ends (DataFusion's
/// `need_produce_result_in_final`).
fn emits_build_rows_at_end(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left | JoinType::LeftAnti | JoinType::LeftSemi | JoinType::LeftMark | JoinType::Full
    )
}

fn senders_of(placement: Placement) -> Senders {
    match placement {
        Placement::Distributed => Senders::All,
        Placement::Single | Placement::Replicated => Senders::Leader,
    }
}
