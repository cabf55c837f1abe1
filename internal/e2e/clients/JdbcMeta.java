// JdbcMeta runs pgJDBC's DatabaseMetaData calls that tools (DBeaver,
// Hibernate, Liquibase, IDEs) make, for keyhole's end-to-end tests.
//
// Usage: java -cp postgresql.jar JdbcMeta.java URL USER PASSWORD SCHEMA TABLE...
//
// For each table it prints one line per call, tab separated:
//   call <TAB> table <TAB> ok <TAB> value,value,...   (the call's key column)
//   call <TAB> table <TAB> error <TAB> SQLSTATE <TAB> message
// and a last line "done". A failed call does not stop the others: the
// connection is in autocommit mode, as tools use it for metadata.
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;

public class JdbcMeta {
    interface Call {
        ResultSet run(DatabaseMetaData md, String schema, String table) throws SQLException;
    }

    static void report(DatabaseMetaData md, String name, String schema, String table, String column, Call c) {
        try (ResultSet rs = c.run(md, schema, table)) {
            List<String> vals = new ArrayList<>();
            while (rs.next()) {
                vals.add(rs.getString(column));
            }
            System.out.println(name + "\t" + table + "\tok\t" + String.join(",", vals));
        } catch (SQLException e) {
            String msg = e.getMessage() == null ? "" : e.getMessage().replace('\n', ' ').replace('\t', ' ');
            System.out.println(name + "\t" + table + "\terror\t" + e.getSQLState() + "\t" + msg);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], user = args[1], password = args[2], schema = args[3];
        try (Connection conn = DriverManager.getConnection(url, user, password)) {
            conn.setAutoCommit(true);
            DatabaseMetaData md = conn.getMetaData();
            for (int i = 4; i < args.length; i++) {
                String t = args[i];
                report(md, "getTables", schema, t, "TABLE_NAME",
                        (m, s, tb) -> m.getTables(null, s, tb, new String[] {"TABLE"}));
                report(md, "getColumns", schema, t, "COLUMN_NAME",
                        (m, s, tb) -> m.getColumns(null, s, tb, null));
                report(md, "getPrimaryKeys", schema, t, "COLUMN_NAME",
                        (m, s, tb) -> m.getPrimaryKeys(null, s, tb));
                report(md, "getImportedKeys", schema, t, "PKTABLE_NAME",
                        (m, s, tb) -> m.getImportedKeys(null, s, tb));
                report(md, "getExportedKeys", schema, t, "FKTABLE_NAME",
                        (m, s, tb) -> m.getExportedKeys(null, s, tb));
            }
        }
        System.out.println("done");
    }
}
