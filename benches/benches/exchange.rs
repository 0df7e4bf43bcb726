//! Exchange throughput: weft-runtime's hash exchange between 2 participants
//! of a LocalMesh against DataFusion's RepartitionExec doing the same hash
//! partitioning in one process, measured side by side in one run.
//!
//! Both sides hash-partition the same input (2 shares of batches of 8192
//! rows of (i64, f64, utf8 of ~20 bytes)) on the i64 column into 2
//! partitions with DataFusion's own `BatchPartitioner`, and drain every
//! output partition. RepartitionExec hands batches between threads through
//! in-memory channels; weft encodes them as Arrow IPC into shared-memory
//! rings and decodes them on the other side. The difference is the price
//! of the transport. Target: weft >= 0.8x RepartitionExec's rows/s.
//!
//! Run: `cargo bench -p weft-benches --bench exchange` (add `-- --quick`
//! for a short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::{BatchPartitioner, RepartitionExec};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use futures::StreamExt;
use weft_runtime::{BatchReceiver, BatchSender, Inbox, LocalMesh, Outbox, Participant, RuntimeError};

const PARTICIPANTS: usize = 2;
const ROWS_PER_BATCH: usize = 8192;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
        Field::new("s", DataType::Utf8, false),
    ]))
}

/// `batches` batches per share, deterministic.
fn input(batches: usize) -> Vec<Vec<RecordBatch>> {
    let schema = schema();
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 31)
    };
    (0..PARTICIPANTS)
        .map(|_| {
            (0..batches)
                .map(|_| {
                    let keys: Int64Array = (0..ROWS_PER_BATCH).map(|_| next() as i64 >> 1).collect();
                    let values: Float64Array = (0..ROWS_PER_BATCH).map(|_| next() as f64 / 1e9).collect();
                    let strings: StringArray = (0..ROWS_PER_BATCH)
                        .map(|_| Some(format!("customer#{:011}", next() % 100_000_000_000)))
                        .collect();
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![Arc::new(keys), Arc::new(values), Arc::new(strings)],
                    )
                    .expect("batch")
                })
                .collect()
        })
        .collect()
}

fn hash_partitioning() -> Partitioning {
    Partitioning::Hash(vec![col("k", &schema()).expect("column k")], PARTICIPANTS)
}

/// DataFusion: RepartitionExec over an in-memory source with one input
/// partition per share, every output partition drained by its own task on
/// a 2-thread runtime.
fn datafusion_run(shares: &[Vec<RecordBatch>]) -> (usize, Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(PARTICIPANTS)
        .build()
        .expect("runtime");
    let source = MemorySourceConfig::try_new_exec(shares, schema(), None).expect("source");
    let plan = Arc::new(RepartitionExec::try_new(source, hash_partitioning()).expect("repartition"));
    let started = Instant::now();
    let rows = runtime.block_on(async {
        let tasks: Vec<_> = (0..PARTICIPANTS)
            .map(|p| {
                let mut stream = plan.execute(p, Arc::new(TaskContext::default())).expect("execute");
                tokio::spawn(async move {
                    let mut rows = 0;
                    while let Some(batch) = stream.next().await {
                        rows += batch.expect("batch").num_rows();
                    }
                    rows
                })
            })
            .collect();
        let mut rows = 0;
        for task in tasks {
            rows += task.await.expect("drain task");
        }
        rows
    });
    (rows, started.elapsed())
}

/// weft: each participant partitions its share with the same
/// BatchPartitioner and sends each piece to its participant through the
/// mesh; each participant drains what the others (and itself) sent. Timed
/// like the DataFusion side, without setup: from the first participant
/// starting to send to the last one finishing (threads, runtimes and the
/// mesh's memory are made before).
fn weft_run(mesh: &LocalMesh, shares: &[Vec<RecordBatch>]) -> (usize, Duration) {
    let results = mesh.run(|node: Arc<Participant>| {
        let share = shares[node.id() as usize].clone();
        async move {
            let mut outs = Vec::new();
            for to in 0..node.participants() {
                outs.push(BatchSender::new(Outbox::open(&node, 0, to).await?, &schema())?);
            }
            let me = node.id() as usize;
            let started = Instant::now();
            let producer = tokio::task::spawn_local(async move {
                let mut partitioner = BatchPartitioner::try_new(hash_partitioning(), Time::new(), me, PARTICIPANTS)
                    .map_err(|e| RuntimeError::Arrow(e.to_string()))?;
                for batch in share {
                    let pieces: Vec<(usize, RecordBatch)> = partitioner
                        .partition_iter(batch)
                        .and_then(|pieces| pieces.collect())
                        .map_err(|e| RuntimeError::Arrow(e.to_string()))?;
                    for (to, piece) in pieces {
                        outs[to].send(&piece).await?;
                    }
                }
                for out in outs {
                    out.finish().await?;
                }
                Ok::<_, RuntimeError>(())
            });
            let mut drains = Vec::new();
            for from in 0..node.participants() {
                let mut rx = BatchReceiver::new(Inbox::open(&node, 0, from)?);
                drains.push(tokio::task::spawn_local(async move {
                    let mut rows = 0;
                    while let Some(batch) = rx.next().await? {
                        rows += batch.num_rows();
                    }
                    Ok::<_, RuntimeError>(rows)
                }));
            }
            let mut rows = 0;
            for drain in drains {
                rows += drain.await.expect("drain task")?;
            }
            producer.await.expect("producer task")?;
            Ok((rows, started, Instant::now()))
        }
    });
    let spans: Vec<(usize, Instant, Instant)> = results.into_iter().map(|r| r.expect("participant").0).collect();
    let rows = spans.iter().map(|s| s.0).sum();
    let started = spans.iter().map(|s| s.1).min().expect("participants");
    let finished = spans.iter().map(|s| s.2).max().expect("participants");
    (rows, finished - started)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo test --benches` runs bench targets with --bench absent: keep
    // that a smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (batches, rounds) = match (smoke, quick) {
        (true, _) => (4, 1),
        (false, true) => (64, 3),
        (false, false) => (256, 7),
    };
    let shares = input(batches);
    let total: usize = shares.iter().flatten().map(RecordBatch::num_rows).sum();
    let mesh = LocalMesh::new(PARTICIPANTS as u32, 1, 4 << 20).expect("mesh");
    let (mut df, mut weft, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (rows, df_time) = datafusion_run(&shares);
        assert_eq!(rows, total, "DataFusion lost rows");
        let (rows, weft_time) = weft_run(&mesh, &shares);
        assert_eq!(rows, total, "weft lost rows");
        let (d, w) = (
            total as f64 / df_time.as_secs_f64(),
            total as f64 / weft_time.as_secs_f64(),
        );
        df.push(d);
        weft.push(w);
        ratio.push(w / d);
    }
    println!(
        "hash exchange of {total} rows (i64, f64, utf8 ~20 B) between {PARTICIPANTS} participants, {rounds} rounds"
    );
    println!("| subject | median Mrows/s |");
    println!("|---|---:|");
    println!(
        "| DataFusion RepartitionExec (1 process, 2 threads) | {:.2} |",
        median(df) / 1e6
    );
    println!(
        "| weft LocalMesh (2 participants, 4 MiB rings) | {:.2} |",
        median(weft) / 1e6
    );
    let (lo, hi) = ratio
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "weft / RepartitionExec: {:.2} (min {lo:.2}, max {hi:.2}); target >= 0.80",
        median(ratio.clone())
    );
}
