// MariaJdbc drives MariaDB Connector/J (Debian's libmariadb-java) through
// keyhole's MySQL listener, for keyhole's end-to-end tests: what a Java
// agent or tool (DBeaver, Hibernate, Spring) does with a JDBC connection.
//
// Usage: java -cp mariadb-java-client.jar MariaJdbc.java URL USER PASSWORD DATABASE
//
// It prints one line per step, tab separated:
//   step <TAB> ok <TAB> value,value,...
//   step <TAB> error <TAB> errno <TAB> SQLSTATE <TAB> message
// and a last line "done". A failed step does not stop the others.
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;

public class MariaJdbc {
    interface Step {
        List<String> run() throws SQLException;
    }

    static void step(String name, Step s) {
        try {
            System.out.println(name + "\tok\t" + String.join(",", s.run()));
        } catch (SQLException e) {
            String msg = e.getMessage() == null ? "" : e.getMessage().replace('\n', ' ').replace('\t', ' ');
            System.out.println(name + "\terror\t" + e.getErrorCode() + "\t" + e.getSQLState() + "\t" + msg);
        }
    }

    static List<String> rows(ResultSet rs, int... cols) throws SQLException {
        List<String> out = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                List<String> row = new ArrayList<>();
                for (int c : cols) {
                    row.add(rs.getString(c));
                }
                out.add(String.join(":", row));
            }
        }
        return out;
    }

    static List<String> rows(ResultSet rs, String col) throws SQLException {
        List<String> out = new ArrayList<>();
        try (rs) {
            while (rs.next()) {
                out.add(rs.getString(col));
            }
        }
        return out;
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1], password = args[2], db = args[3];
        try (Connection conn = DriverManager.getConnection(url, user, password)) {
            step("select", () -> {
                try (Statement st = conn.createStatement()) {
                    return rows(st.executeQuery("SELECT id, name FROM customers ORDER BY id"), 1, 2);
                }
            });
            step("denied_column", () -> {
                try (Statement st = conn.createStatement()) {
                    return rows(st.executeQuery("SELECT email FROM customers"), 1);
                }
            });
            step("count", () -> {
                try (Statement st = conn.createStatement()) {
                    return rows(st.executeQuery("SELECT count(*) FROM orders"), 1);
                }
            });
            // A transaction: 100 rolled back, 101 committed; the DELETE
            // refused inside it leaves the transaction open.
            step("rollback", () -> {
                conn.setAutoCommit(false);
                try (Statement st = conn.createStatement()) {
                    st.executeUpdate("INSERT INTO orders (id, item, amount) VALUES (100, 'x', 1)");
                }
                conn.rollback();
                return List.of();
            });
            step("insert", () -> {
                try (Statement st = conn.createStatement()) {
                    return List.of(String.valueOf(st.executeUpdate("INSERT INTO orders (id, item, amount) VALUES (101, 'y', 2)")));
                }
            });
            step("denied_write", () -> {
                try (Statement st = conn.createStatement()) {
                    return List.of(String.valueOf(st.executeUpdate("DELETE FROM orders")));
                }
            });
            step("commit", () -> {
                conn.commit();
                conn.setAutoCommit(true);
                return List.of();
            });
            // Server-side prepared statements (useServerPrepStmts=true in
            // the URL): COM_STMT_PREPARE once, COM_STMT_EXECUTE twice.
            step("prepared", () -> {
                List<String> out = new ArrayList<>();
                try (PreparedStatement ps = conn.prepareStatement("SELECT item FROM orders WHERE id = ?")) {
                    for (int id : new int[] {3, 7}) {
                        ps.setInt(1, id);
                        out.addAll(rows(ps.executeQuery(), 1));
                    }
                }
                return out;
            });
            step("denied_prepare", () -> {
                try (PreparedStatement ps = conn.prepareStatement("SELECT email FROM customers WHERE id = ?")) {
                    ps.setInt(1, 1);
                    return rows(ps.executeQuery(), 1);
                }
            });
            // Streaming a result (fetch size): Connector/J reads rows as
            // they come instead of buffering them all.
            step("streamed", () -> {
                try (Statement st = conn.createStatement()) {
                    st.setFetchSize(3);
                    return List.of(String.valueOf(rows(st.executeQuery("SELECT id FROM orders WHERE id <= 10 ORDER BY id"), 1).size()));
                }
            });
            // What tools ask DatabaseMetaData.
            DatabaseMetaData md = conn.getMetaData();
            step("getTables", () -> rows(md.getTables(db, null, "%", new String[] {"TABLE"}), "TABLE_NAME"));
            step("getColumns customers", () -> rows(md.getColumns(db, null, "customers", "%"), "COLUMN_NAME"));
            step("getPrimaryKeys orders", () -> rows(md.getPrimaryKeys(db, null, "orders"), "COLUMN_NAME"));
            step("session", () -> {
                try (Statement st = conn.createStatement()) {
                    return rows(st.executeQuery("SELECT name FROM customers WHERE id = 2"), 1);
                }
            });
        }
        System.out.println("done");
    }
}
