//! TPC-H at scale factor 0.1, loaded into a throwaway cluster: all 22
//! queries through `weft.query` with 0, 1 and 2 workers return what the
//! same queries return on stock Postgres, compared here, and the same rows
//! for every worker count.

use weft_pg_harness::{text_rows, tpch, Cluster, Rows};

/// `value` (decimal text) rounded half away from zero to `scale` digits,
/// as Postgres's round() does.
fn round(value: &str, scale: usize) -> String {
    let negative = value.starts_with('-');
    let digits = value.trim_start_matches('-');
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut fraction: Vec<u8> = fraction.bytes().collect();
    fraction.resize(fraction.len().max(scale + 1), b'0');
    let round_up = fraction[scale] >= b'5';
    let mut kept: Vec<u8> = whole.bytes().chain(fraction[..scale].iter().copied()).collect();
    if round_up {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if kept[i] == b'9' {
                kept[i] = b'0';
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let split = kept.len() - scale;
    let whole = String::from_utf8(kept[..split].to_vec()).unwrap();
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let fraction = String::from_utf8(kept[split..].to_vec()).unwrap();
    let zero = whole == "0" && fraction.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// `value` (decimal text) cut to `scale` digits.
fn truncate(value: &str, scale: usize) -> String {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let mut fraction = fraction.to_string();
    fraction.truncate(scale);
    while fraction.len() < scale {
        fraction.push('0');
    }
    let text = if scale == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    };
    if text.trim_start_matches('-').bytes().all(|b| b == b'0' || b == b'.') {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

/// Whether weft's value equals Postgres's: numerics after rounding
/// Postgres's to weft's scale, or cutting it there (weft.query follows
/// DataFusion's decimal rules, whose division truncates), bpchar without
/// its padding, everything else exactly.
fn same(ty: &str, weft: &Option<String>, stock: &Option<String>) -> bool {
    match (weft, stock) {
        (Some(w), Some(s)) => match ty {
            "numeric" => {
                let scale = w.split_once('.').map_or(0, |(_, f)| f.len());
                *w == round(s, scale) || *w == truncate(s, scale)
            }
            "bpchar" => w.trim_end_matches(' ') == s.trim_end_matches(' '),
            _ => w == s,
        },
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn rounding_follows_postgres() {
    assert_eq!(round("1.005", 2), "1.01");
    assert_eq!(round("-1.005", 2), "-1.01");
    assert_eq!(round("9.999", 2), "10.00");
    assert_eq!(round("-0.001", 2), "0.00");
    assert_eq!(round("12", 3), "12.000");
    assert_eq!(round("25.5220058532573370", 6), "25.522006");
    assert_eq!(truncate("0.05014459706340077136", 6), "0.050144");
    assert_eq!(truncate("-0.0001", 2), "0.00");
    assert_eq!(truncate("-12.5", 0), "-12");
}

#[test]
fn tpch_through_weft_query_matches_stock_postgres() {
    let cluster = Cluster::start_with(&[("max_worker_processes", "8"), ("max_parallel_workers", "8")]);
    let mut client = cluster.connect();
    // Stock Postgres is the reference here: keep the planner hook out of it
    // (weft.query itself does not depend on weft.enable).
    client
        .batch_execute("CREATE EXTENSION weft; SET weft.enable = off")
        .unwrap();
    tpch::load(&mut client, 0.1);
    // Lets stock Postgres answer Q17 and Q20 (correlated subqueries) in
    // seconds; weft reads the heap and ignores it.
    client
        .batch_execute("CREATE INDEX ON lineitem (l_partkey, l_suppkey); ANALYZE lineitem;")
        .unwrap();

    let mut failures = Vec::new();
    for (number, sql) in tpch::queries() {
        let expected = text_rows(&mut client, &sql).unwrap_or_else(|e| panic!("Q{number} on Postgres: {e}"));
        let (list, types) = tpch::definition(&mut client, &sql).unwrap();
        let ordered = sql.to_lowercase().contains("order by");
        let mut by_workers: Vec<Rows> = Vec::new();
        for workers in [0, 1, 2] {
            client.batch_execute(&format!("SET weft.workers = {workers}")).unwrap();
            let through_weft = format!("SELECT * FROM weft.query($weft${sql}$weft$) AS t({list})");
            let mut got = match text_rows(&mut client, &through_weft) {
                Ok(rows) => rows,
                Err(e) => {
                    failures.push(format!("Q{number}, {workers} workers: {e}"));
                    continue;
                }
            };
            let mut want = expected.clone();
            if !ordered {
                got.sort();
                want.sort();
            }
            let matches = got.len() == want.len()
                && got.iter().zip(&want).all(|(g, w)| {
                    g.len() == w.len() && types.iter().zip(g.iter().zip(w)).all(|(ty, (g, w))| same(ty, g, w))
                });
            if !matches {
                failures.push(format!(
                    "Q{number}, {workers} workers: {} rows, Postgres {}\n weft: {:?}\n   pg: {:?}",
                    got.len(),
                    want.len(),
                    got.iter().take(3).collect::<Vec<_>>(),
                    want.iter().take(3).collect::<Vec<_>>()
                ));
            }
            by_workers.push(got);
        }
        if by_workers.windows(2).any(|pair| pair[0] != pair[1]) {
            failures.push(format!("Q{number}: results differ between worker counts"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
