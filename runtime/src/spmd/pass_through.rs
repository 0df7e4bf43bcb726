//! The methods every node that passes its one input's rows through
//! unchanged shares (a node that runs its input elsewhere, shares it, or
//! watches it go by): [`pass_through_rows!`](crate::pass_through_rows).

/// Writes, inside an `impl ExecutionPlan for T` whose `T` has its one
/// input in a field `input`, the methods of a node that outputs its
/// input's rows unchanged: its child is `input`, its cardinality that of
/// its input, and its statistics its input's (so that the joins and
/// exchanges above are planned as they would be without it).
///
/// ```ignore
/// impl ExecutionPlan for MyNode {
///     weft_runtime::pass_through_rows!();
///     // name, properties, with_new_children, execute, ...
/// }
/// ```
#[macro_export]
macro_rules! pass_through_rows {
    () => {
        fn children(&self) -> Vec<&::std::sync::Arc<dyn ::datafusion::physical_plan::ExecutionPlan>> {
            vec![&self.input]
        }

        fn cardinality_effect(&self) -> ::datafusion::physical_plan::execution_plan::CardinalityEffect {
            ::datafusion::physical_plan::execution_plan::CardinalityEffect::Equal
        }

        fn child_stats_requests(
            &self,
            partition: Option<usize>,
        ) -> Vec<::datafusion::physical_plan::statistics::ChildStats> {
            vec![::datafusion::physical_plan::statistics::ChildStats::At(partition)]
        }

        fn statistics_from_inputs(
            &self,
            input_stats: &[::std::sync::Arc<::datafusion::common::Statistics>],
            _args: &::datafusion::physical_plan::statistics::StatisticsArgs,
        ) -> ::datafusion::common::Result<::std::sync::Arc<::datafusion::common::Statistics>> {
            Ok(::std::sync::Arc::clone(&input_stats[0]))
        }
    };
}
