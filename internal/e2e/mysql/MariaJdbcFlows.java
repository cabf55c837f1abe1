// MariaJdbcFlows drives MariaDB Connector/J's batch and multi-statement
// flows through keyhole's MySQL listener, for TestMySQLDrivers: the same
// program runs with useServerPrepStmts, useBulkStmts, useCompression,
// allowMultiQueries and rewriteBatchedStatements in the URL.
//
// Usage: java -cp mariadb-java-client.jar MariaJdbcFlows.java URL USER PASSWORD FIRST_ID
//
// One line per step, tab separated: step <TAB> ok <TAB> value, or
// step <TAB> error <TAB> errno; a last line "done".
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class MariaJdbcFlows {
    interface Step {
        Object run() throws SQLException;
    }

    static void step(String name, Step s) {
        try {
            System.out.println(name + "\tok\t" + s.run());
        } catch (SQLException e) {
            System.out.println(name + "\terror\t" + e.getErrorCode());
        }
    }

    static String one(Connection c, String sql) throws SQLException {
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
            rs.next();
            return rs.getString(1);
        }
    }

    public static void main(String[] args) throws Exception {
        int first = Integer.parseInt(args[3]);
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            step("batch", () -> {
                try (PreparedStatement ps = c.prepareStatement("INSERT INTO orders (id, item, amount) VALUES (?, ?, ?)")) {
                    for (int i = 0; i < 3; i++) {
                        ps.setInt(1, first + i);
                        ps.setString(2, "batch" + i);
                        ps.setBigDecimal(3, new BigDecimal("1.25"));
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
                return one(c, "SELECT count(*) FROM orders WHERE id >= " + first);
            });
            step("batch_denied", () -> {
                try (PreparedStatement ps = c.prepareStatement("UPDATE orders SET amount = ? WHERE id = ?")) {
                    for (int i = 0; i < 2; i++) {
                        ps.setInt(1, 9);
                        ps.setInt(2, first + i);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                }
                return "ran";
            });
            step("statement_batch_denied", () -> {
                try (Statement st = c.createStatement()) {
                    st.addBatch("INSERT INTO orders (id, item, amount) VALUES (" + (first + 10) + ", 's', 1)");
                    st.addBatch("DELETE FROM orders");
                    st.executeBatch();
                }
                return "ran";
            });
            step("prepared_types", () -> {
                try (PreparedStatement ps = c.prepareStatement("SELECT ?, ?, ?, ?, item FROM orders WHERE id = ?")) {
                    ps.setLong(1, 1L << 40);
                    ps.setString(2, "héllo");
                    ps.setBigDecimal(3, new BigDecimal("12.345"));
                    ps.setNull(4, java.sql.Types.VARCHAR);
                    ps.setInt(5, 3);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        return rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getString(3) + "|" + rs.getString(4) + "|" + rs.getString(5);
                    }
                }
            });
            step("denied_in_tx", () -> {
                c.setAutoCommit(false);
                try (Statement st = c.createStatement()) {
                    st.executeUpdate("INSERT INTO orders (id, item, amount) VALUES (" + (first + 20) + ", 't', 1)");
                    try {
                        st.executeUpdate("DELETE FROM orders");
                    } catch (SQLException e) {
                        // refused; the transaction goes on
                    }
                    return one(c, "SELECT @@in_transaction");
                } finally {
                    c.rollback();
                    c.setAutoCommit(true);
                }
            });
            step("final", () -> one(c, "SELECT count(*) FROM orders WHERE id >= " + first));
        }
        System.out.println("done");
    }
}
