// A pgjdbc client of weft's driver tests (pgext/tests/drivers.rs).
//
// Usage: java -cp postgresql.jar:. JdbcClient PORT MODE, MODE being "weft"
// (weft.force on) or "stock" (weft off); connects to 127.0.0.1. Runs,
// marked with a comment naming the client and the mode (the server log's
// plans are read by it):
//   - a PreparedStatement executed 10 times with a changing parameter
//     (pgjdbc switches to a named server-side statement after
//     prepareThreshold, 5, executions);
//   - a query read with setFetchSize(1000) inside a transaction, which
//     pgjdbc fetches from a portal 1,000 rows at a time.
// Prints what the queries returned, a line per row.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.Properties;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String port = args[0];
        String mode = args[1];
        Properties props = new Properties();
        props.setProperty("user", "postgres");
        props.setProperty("prepareThreshold", "5");
        props.setProperty("options", mode.equals("weft") ? "-c weft.force=on" : "-c weft.enable=off");
        String marker = "/* jdbc " + mode + " */ ";
        try (Connection conn = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + port + "/postgres", props)) {
            try (PreparedStatement ps = conn.prepareStatement(marker
                    + "SELECT region, count(*), sum(amount)::text FROM sales WHERE qty < ? GROUP BY region ORDER BY 1")) {
                for (int qty = 0; qty < 10; qty++) {
                    ps.setInt(1, qty);
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            System.out.println("prepared " + qty + ": " + rs.getString(1) + " " + rs.getLong(2) + " "
                                    + rs.getString(3));
                        }
                    }
                }
            }
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement(marker
                    + "SELECT s.i, t.region FROM sales s JOIN sales t ON t.i = s.i + 1 WHERE s.qty < ? ORDER BY s.i")) {
                ps.setFetchSize(1000);
                ps.setInt(1, 5);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        System.out.println("fetched: " + rs.getInt(1) + " " + rs.getString(2));
                    }
                }
            }
            conn.commit();
        }
    }
}
