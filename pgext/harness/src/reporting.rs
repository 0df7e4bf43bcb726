//! Reporting queries over the TPC-H tables: the shapes reports are written
//! in beyond TPC-H's own (ranks per group, running totals, ROLLUP, UNION
//! ALL of aggregates, NOT IN over a nullable column, DISTINCT ON, FILTER,
//! year-over-year changes with `lag`). `make bench-reporting` runs them
//! weft on against off; each query's ORDER BY is total, so that both
//! sides' rows compare equal.

/// The queries, as (number, SQL).
pub fn queries() -> Vec<(usize, String)> {
    QUERIES
        .iter()
        .enumerate()
        .map(|(i, text)| (i + 1, text.trim().to_string()))
        .collect()
}

const QUERIES: &[&str] = &[
    // 1. The three best customers of each nation by order value: rank().
    "SELECT n_name, c_name, revenue, rnk FROM (
       SELECT n_name, c_name, sum(o_totalprice) AS revenue,
              rank() OVER (PARTITION BY n_name ORDER BY sum(o_totalprice) DESC) AS rnk
         FROM customer JOIN orders ON o_custkey = c_custkey JOIN nation ON n_nationkey = c_nationkey
        GROUP BY n_name, c_name) ranked
      WHERE rnk <= 3 ORDER BY n_name, rnk, c_name",
    // 2. Monthly revenue per nation with its running total: a ROWS frame
    //    over grouped rows.
    "SELECT n_name, extract(year FROM o_orderdate)::int AS y, extract(month FROM o_orderdate)::int AS m,
            sum(l_extendedprice * (1 - l_discount)) AS revenue,
            sum(sum(l_extendedprice * (1 - l_discount))) OVER (
                PARTITION BY n_name ORDER BY extract(year FROM o_orderdate)::int, extract(month FROM o_orderdate)::int
                ROWS UNBOUNDED PRECEDING) AS running
       FROM lineitem JOIN orders ON l_orderkey = o_orderkey
            JOIN customer ON o_custkey = c_custkey JOIN nation ON c_nationkey = n_nationkey
      GROUP BY n_name, 2, 3 ORDER BY n_name, y, m",
    // 3. Revenue by nation and year, rolled up to nations and the total.
    "SELECT n_name, extract(year FROM o_orderdate)::int AS y, sum(l_extendedprice * (1 - l_discount)) AS revenue,
            count(*) AS lines, GROUPING(n_name, extract(year FROM o_orderdate)::int) AS level
       FROM lineitem JOIN orders ON l_orderkey = o_orderkey
            JOIN customer ON o_custkey = c_custkey JOIN nation ON c_nationkey = n_nationkey
      GROUP BY ROLLUP(n_name, extract(year FROM o_orderdate)::int) ORDER BY level, n_name, y",
    // 4. Two aggregates side by side: UNION ALL.
    "SELECT 'priority' AS kind, o_orderpriority::text AS k, count(*) AS n, sum(o_totalprice) AS total
       FROM orders GROUP BY o_orderpriority
     UNION ALL
     SELECT 'shipmode', l_shipmode::text, count(*), sum(l_extendedprice) FROM lineitem GROUP BY l_shipmode
     ORDER BY kind, k",
    // 5. Customers without a finished order: NOT IN over a nullable column.
    "SELECT c_mktsegment, count(*), sum(c_acctbal) FROM customer
      WHERE c_custkey NOT IN (SELECT o_custkey FROM orders WHERE o_orderstatus = 'F')
      GROUP BY c_mktsegment ORDER BY c_mktsegment",
    // 6. Each customer's latest order of 1998: DISTINCT ON.
    "SELECT DISTINCT ON (o_custkey) o_custkey, o_orderdate, o_orderkey, o_totalprice
       FROM orders WHERE o_orderdate >= date '1998-01-01'
      ORDER BY o_custkey, o_orderdate DESC, o_orderkey",
    // 7. Conditional aggregates: FILTER.
    "SELECT l_shipmode, count(*) FILTER (WHERE l_returnflag = 'R') AS returned,
            sum(l_quantity) FILTER (WHERE l_linestatus = 'O') AS open_quantity,
            count(DISTINCT l_suppkey) FILTER (WHERE l_quantity > 45) AS big_suppliers
       FROM lineitem GROUP BY l_shipmode ORDER BY l_shipmode",
    // 8. Year-over-year revenue per nation: lag() over grouped rows.
    "SELECT n_name, extract(year FROM o_orderdate)::int AS y, sum(l_extendedprice * (1 - l_discount)) AS revenue,
            sum(l_extendedprice * (1 - l_discount))
              - lag(sum(l_extendedprice * (1 - l_discount))) OVER (PARTITION BY n_name ORDER BY extract(year FROM o_orderdate)::int)
              AS change
       FROM lineitem JOIN orders ON l_orderkey = o_orderkey
            JOIN customer ON o_custkey = c_custkey JOIN nation ON c_nationkey = n_nationkey
      GROUP BY n_name, 2 ORDER BY n_name, y",
];
