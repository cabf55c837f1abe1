// JdbcFlows drives pgJDBC (Debian's libpostgresql-jdbc-java) through keyhole
// for TestJdbcFlows: server-side prepared statements, batches, fetch-size
// portals with autocommit off, savepoints, and refusals in each.
//
// Usage: java -cp postgresql.jar JdbcFlows.java URL USER PASSWORD
//
// One line per step, tab separated: step <TAB> ok <TAB> value, or
// step <TAB> error <TAB> SQLSTATE; a last line "done". A failed step does
// not stop the others.
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

public class JdbcFlows {
    interface Step {
        Object run() throws SQLException;
    }

    static void step(String name, Step s) {
        try {
            Object r = s.run();
            System.out.println(name + "\tok\t" + (r instanceof int[] ? Arrays.toString((int[]) r) : String.valueOf(r)));
        } catch (SQLException e) {
            System.out.println(name + "\terror\t" + e.getSQLState());
        }
    }

    static String one(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        try (Connection c = DriverManager.getConnection(args[0], p)) {
            // With prepareThreshold=1 the second execution binds a named
            // server-side statement.
            step("prepared", () -> {
                List<String> out = new ArrayList<>();
                try (PreparedStatement ps = c.prepareStatement("SELECT id, total FROM orders WHERE id = ?")) {
                    for (int id = 1; id <= 3; id++) {
                        ps.setInt(1, id);
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) {
                                out.add(rs.getInt(1) + ":" + rs.getBigDecimal(2));
                            }
                        }
                    }
                }
                return String.join(",", out);
            });
            step("prepared_denied", () -> {
                try (PreparedStatement ps = c.prepareStatement("SELECT ssn FROM customers WHERE id = ?")) {
                    ps.setInt(1, 1);
                    ps.executeQuery().close();
                }
                return "ran";
            });
            step("batch", () -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO orders (customer_id, product_id, total) VALUES (?, ?, ?)")) {
                    for (int i = 1; i <= 3; i++) {
                        ps.setInt(1, i);
                        ps.setInt(2, 1);
                        ps.setBigDecimal(3, new BigDecimal("1.25"));
                        ps.addBatch();
                    }
                    return ps.executeBatch().length;
                }
            });
            // The batch is one sync block: the refusal of its second entry
            // rolls back the first.
            step("batch_denied", () -> {
                try (Statement st = c.createStatement()) {
                    st.addBatch("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 2.50)");
                    st.addBatch("DELETE FROM orders");
                    st.addBatch("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 2.75)");
                    return st.executeBatch();
                }
            });
            step("count", () -> one(c, "SELECT count(*) FROM orders"));
            // A fetch size with autocommit off reads a portal in parts
            // (Execute with a row limit, PortalSuspended).
            step("fetch", () -> {
                c.setAutoCommit(false);
                int n = 0;
                try (PreparedStatement ps = c.prepareStatement("SELECT id FROM orders WHERE id > ? ORDER BY id")) {
                    ps.setFetchSize(2);
                    ps.setInt(1, 0);
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            n++;
                        }
                    }
                } finally {
                    c.commit();
                    c.setAutoCommit(true);
                }
                return n;
            });
            // A refusal aborts the transaction, as an error would.
            step("denied_in_tx", () -> {
                c.setAutoCommit(false);
                try (Statement st = c.createStatement()) {
                    st.executeUpdate("INSERT INTO orders (customer_id, product_id, total) VALUES (1, 1, 3.50)");
                    try {
                        st.executeUpdate("DELETE FROM orders");
                    } catch (SQLException e) {
                        // refused
                    }
                    return one(c, "SELECT 1");
                } finally {
                    c.rollback();
                    c.setAutoCommit(true);
                }
            });
            // A savepoint released earlier in the transaction, then a portal
            // read in parts across a refusal rolled back to a later savepoint:
            // the server keeps the portal (it was opened before that
            // savepoint), and so must keyhole. With autosave the driver sets,
            // releases and rolls back to its own savepoints around every
            // statement.
            boolean autosave = args[0].contains("autosave=always");
            step("fetch_across_savepoint", () -> {
                c.setAutoCommit(false);
                int n = 0;
                try (Statement st = c.createStatement()) {
                    if (!autosave) {
                        c.releaseSavepoint(c.setSavepoint());
                    }
                    st.setFetchSize(2);
                    try (ResultSet rs = st.executeQuery("SELECT id FROM orders ORDER BY id")) {
                        rs.next();
                        n++;
                        Savepoint sp = autosave ? null : c.setSavepoint();
                        try (Statement st2 = c.createStatement()) {
                            st2.executeQuery("SELECT email FROM customers").close();
                        } catch (SQLException e) {
                            if (sp != null) {
                                c.rollback(sp);
                            }
                        }
                        while (rs.next()) {
                            n++;
                        }
                    }
                } finally {
                    c.rollback();
                    c.setAutoCommit(true);
                }
                return n;
            });
            step("final", () -> one(c, "SELECT count(*) FROM orders"));
        }
        System.out.println("done");
    }
}
