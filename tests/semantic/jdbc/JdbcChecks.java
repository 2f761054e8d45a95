// pgjdbc (Debian's libpostgresql-jdbc-java) against the SQL endpoint, as Java BI tools use it: the
// DatabaseMetaData calls, server-prepared statements (binary from the 5th execution), setDate and
// setInt parameters, a fetch size (portals run in batches), errors and transactions, and the exact
// catalog queries Metabase and DBeaver send through this driver (each cites its source).
//
// Run in source mode: java -cp /usr/share/java/postgresql.jar JdbcChecks.java URL USER PASSWORD TABLE
// DIMENSION MEASURE FIRST_DAY END_DAY. Prints one line per check: name TAB rows, rows separated by
// " ; " and values by " | ", for the Python test to compare with the warehouse.

import java.sql.*;
import java.util.*;

public class JdbcChecks {
    static void print(String name, ResultSet rs, String... columns) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        List<String> rows = new ArrayList<>();
        while (rs.next()) {
            List<String> values = new ArrayList<>();
            if (columns.length == 0) {
                for (int i = 1; i <= md.getColumnCount(); i++) values.add(String.valueOf(rs.getString(i)));
            } else {
                for (String c : columns) values.add(String.valueOf(rs.getString(c)));
            }
            rows.add(String.join(" | ", values));
        }
        System.out.println(name + "\t" + String.join(" ; ", rows));
    }

    static void print(String name, String value) {
        System.out.println(name + "\t" + value);
    }

    static void check(String name, Connection c, String sql, Object... params) {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) ps.setObject(i + 1, params[i]);
            try (ResultSet rs = ps.executeQuery()) {
                print(name, rs);
            }
        } catch (SQLException e) {
            print(name, "ERROR " + e.getSQLState() + " " + e.getMessage());
        }
    }

    static void update(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }

    public static void main(String[] a) throws Exception {
        String url = a[0], table = a[3], dimension = a[4], measure = a[5];
        java.sql.Date first = java.sql.Date.valueOf(a[6]), end = java.sql.Date.valueOf(a[7]);
        Properties p = new Properties();
        p.setProperty("user", a[1]);
        p.setProperty("password", a[2]);
        p.setProperty("ApplicationName", "JdbcChecks");
        try (Connection c = DriverManager.getConnection(url, p)) {
            DatabaseMetaData md = c.getMetaData();
            print("product", md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
            print("getCatalogs", md.getCatalogs(), "TABLE_CAT");
            print("getSchemas", md.getSchemas(), "TABLE_SCHEM");
            print("getTables", md.getTables(null, "public", "%", new String[]{"TABLE", "VIEW"}),
                  "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE");
            print("getColumns", md.getColumns(null, "public", table, "%"), "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME");
            print("getPrimaryKeys", md.getPrimaryKeys(null, "public", table));
            print("getImportedKeys", md.getImportedKeys(null, "public", table));
            print("getExportedKeys", md.getExportedKeys(null, "public", table));
            print("getIndexInfo", md.getIndexInfo(null, "public", table, false, true));
            print("getTableTypes", md.getTableTypes(), "TABLE_TYPE");
            print("getTypeInfo", md.getTypeInfo(), "TYPE_NAME", "DATA_TYPE");

            // a PreparedStatement: pgjdbc prepares it on the server, and reads binary, from its 5th run
            String byDimension = "select " + dimension + ", " + measure + " from " + table + " order by 1";
            String oneValue = "select " + dimension + ", " + measure + " from " + table + " where " + dimension
                + " = ? order by 1";
            String value;
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(byDimension)) {
                rs.next();
                value = rs.getString(1);
            }
            try (PreparedStatement ps = c.prepareStatement(oneValue)) {
                for (int i = 1; i <= 7; i++) {
                    ps.setString(1, value);
                    try (ResultSet rs = ps.executeQuery()) {
                        print("prepared" + i, rs);
                    }
                }
            }
            String byMonth = "select metric_time__month, " + measure + " from " + table
                + " where metric_time >= ? and metric_time < ? order by 1";
            try (PreparedStatement ps = c.prepareStatement(byMonth)) {
                for (int i = 1; i <= 7; i++) {
                    ps.setDate(1, first);
                    ps.setDate(2, end);
                    try (ResultSet rs = ps.executeQuery()) {
                        ResultSetMetaData rmd = rs.getMetaData();
                        StringBuilder out = new StringBuilder(rmd.getColumnTypeName(1) + "," + rmd.getColumnTypeName(2));
                        while (rs.next()) out.append(" ; ").append(rs.getDate(1)).append(" | ").append(rs.getBigDecimal(2));
                        print("setDate" + i, out.toString());
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement(byDimension + " limit ?")) {
                ps.setInt(1, 2);
                try (ResultSet rs = ps.executeQuery()) {
                    print("setInt", rs);
                }
            }
            // a fetch size: the portal is run in batches of 2 rows (Execute with a row limit)
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(2);
                try (ResultSet rs = s.executeQuery("select metric_time, " + measure + " from " + table
                        + " where metric_time >= '" + first + "' and metric_time < '" + end + "' order by 1")) {
                    int n = 0;
                    while (rs.next()) n++;
                    print("fetchSize", String.valueOf(n));
                }
            }
            c.commit();
            // errors: an ErrorResponse with a SQLSTATE, the connection still works; in a transaction
            // block everything is refused (25P02) until ROLLBACK
            check("error", c, "select no_such_column from " + table);
            check("inFailedTransaction", c, "select 1 as x");
            c.rollback();
            check("afterRollback", c, "select 1 as x");
            c.setAutoCommit(true);

            // Metabase (src/metabase/driver/postgres.clj), through this driver:
            update(c, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED");
            // driver/db-default-timezone, then sql-jdbc.execute/set-timezone-sql
            check("metabase.timezone", c, "show timezone;");
            update(c, "SET SESSION TIMEZONE TO 'UTC';");
            // get-tables-sql (describe-syncable-tables)
            check("metabase.tables", c, "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS \"type\", \"d\".\"description\" AS \"description\", NULLIF(\"stat\".\"n_live_tup\", ?) AS \"estimated_row_count\" FROM \"pg_catalog\".\"pg_class\" AS \"c\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") AND (\"d\".\"objsubid\" = ?) AND (\"d\".\"classoid\" = 'pg_class'::regclass) LEFT JOIN \"pg_stat_user_tables\" AS \"stat\" ON (\"n\".\"nspname\" = \"stat\".\"schemaname\") AND (\"c\".\"relname\" = \"stat\".\"relname\") WHERE (\"c\".\"relnamespace\" = \"n\".\"oid\") AND (\"n\".\"nspname\" !~ ?) AND (\"n\".\"nspname\" <> ?) AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN (?)) ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC",
                  0, 0, "^pg_", "information_schema", "public");
            // sql-jdbc.sync/current-user-table-privileges
            check("metabase.privileges", c, String.join("\n",
                "with table_privileges as (",
                " select",
                "   NULL as role,",
                "   t.schemaname as schema,",
                "   t.objectname as table,",
                "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'update') as update,",
                "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'select') as select,",
                "   pg_catalog.has_any_column_privilege(current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'insert') as insert,",
                "   pg_catalog.has_table_privilege(     current_user, '\"' || replace(t.schemaname, '\"', '\"\"') || '\"' || '.' || '\"' || replace(t.objectname, '\"', '\"\"') || '\"',  'delete') as delete",
                " from (",
                "   select schemaname, tablename as objectname from pg_catalog.pg_tables",
                "   union",
                "   select schemaname, viewname as objectname from pg_catalog.pg_views",
                "   union",
                "   select schemaname, matviewname as objectname from pg_catalog.pg_matviews",
                " ) t",
                " where t.schemaname !~ '^pg_'",
                "   and t.schemaname <> 'information_schema'",
                "   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')",
                ")",
                "select t.*",
                "from table_privileges t"));
            // enum-types
            check("metabase.enums", c, "SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)");
            // sql-jdbc.sync/describe-fields-sql
            check("metabase.fields", c, "SELECT \"c\".\"column_name\" AS \"name\", CASE WHEN \"c\".\"udt_schema\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"c\".\"udt_name\") ELSE FORMAT('\"%s\".\"%s\"', \"c\".\"udt_schema\", \"c\".\"udt_name\") END AS \"database-type\", \"c\".\"ordinal_position\" - 1 AS \"database-position\", \"c\".\"table_schema\" AS \"table-schema\", \"c\".\"table_name\" AS \"table-name\", \"pk\".\"column_name\" IS NOT NULL AS \"pk?\", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST(\"c\".\"table_schema\" AS TEXT), CAST(\"c\".\"table_name\" AS TEXT)) AS REGCLASS) AS OID), \"c\".\"ordinal_position\") AS \"field-comment\", ((\"column_default\" IS NULL) OR (LOWER(\"column_default\") = 'null')) AND (\"is_nullable\" = 'NO') AND NOT (((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO')) AS \"database-required\", \"column_default\" AS \"database-default\", ((\"column_default\" IS NOT NULL) AND (\"column_default\" LIKE '%nextval(%')) OR (\"is_identity\" <> 'NO') AS \"database-is-auto-increment\", \"is_generated\" = ? AS \"database-is-generated\", \"is_nullable\" = 'YES' AS \"database-is-nullable\" FROM \"information_schema\".\"columns\" AS \"c\" LEFT JOIN (SELECT \"tc\".\"table_schema\", \"tc\".\"table_name\", \"kc\".\"column_name\" FROM \"information_schema\".\"table_constraints\" AS \"tc\" INNER JOIN \"information_schema\".\"key_column_usage\" AS \"kc\" ON (\"tc\".\"constraint_name\" = \"kc\".\"constraint_name\") AND (\"tc\".\"table_schema\" = \"kc\".\"table_schema\") AND (\"tc\".\"table_name\" = \"kc\".\"table_name\") WHERE \"tc\".\"constraint_type\" = 'PRIMARY KEY') AS \"pk\" ON (\"c\".\"table_schema\" = \"pk\".\"table_schema\") AND (\"c\".\"table_name\" = \"pk\".\"table_name\") AND (\"c\".\"column_name\" = \"pk\".\"column_name\") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"table_schema\" IN (?)) UNION ALL SELECT \"pa\".\"attname\" AS \"name\", CASE WHEN \"ptn\".\"nspname\" IN ('public', 'pg_catalog') THEN FORMAT('%s', \"pt\".\"typname\") ELSE FORMAT('\"%s\".\"%s\"', \"ptn\".\"nspname\", \"pt\".\"typname\") END AS \"database-type\", \"pa\".\"attnum\" - 1 AS \"database-position\", \"pn\".\"nspname\" AS \"table-schema\", \"pc\".\"relname\" AS \"table-name\", FALSE AS \"pk?\", NULL AS \"field-comment\", FALSE AS \"database-required\", NULL AS \"database-default\", FALSE AS \"database-is-auto-increment\", FALSE AS \"database-is-generated\", FALSE AS \"database-is-nullable\" FROM \"pg_catalog\".\"pg_class\" AS \"pc\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"pn\" ON \"pn\".\"oid\" = \"pc\".\"relnamespace\" INNER JOIN \"pg_catalog\".\"pg_attribute\" AS \"pa\" ON \"pa\".\"attrelid\" = \"pc\".\"oid\" INNER JOIN \"pg_catalog\".\"pg_type\" AS \"pt\" ON \"pt\".\"oid\" = \"pa\".\"atttypid\" INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"ptn\" ON \"ptn\".\"oid\" = \"pt\".\"typnamespace\" WHERE (\"pc\".\"relkind\" = 'm') AND (\"pa\".\"attnum\" >= 1) AND (\"pn\".\"nspname\" IN (?)) ORDER BY \"table-schema\" ASC, \"table-name\" ASC, \"database-position\" ASC",
                  "ALWAYS", "public", "public");
            // sql-jdbc.sync/describe-fks-sql
            check("metabase.fks", c, "SELECT \"fk_ns\".\"nspname\" AS \"fk-table-schema\", \"fk_table\".\"relname\" AS \"fk-table-name\", \"fk_column\".\"attname\" AS \"fk-column-name\", \"pk_ns\".\"nspname\" AS \"pk-table-schema\", \"pk_table\".\"relname\" AS \"pk-table-name\", \"pk_column\".\"attname\" AS \"pk-column-name\" FROM \"pg_constraint\" AS \"c\" INNER JOIN \"pg_class\" AS \"fk_table\" ON \"c\".\"conrelid\" = \"fk_table\".\"oid\" INNER JOIN \"pg_namespace\" AS \"fk_ns\" ON \"c\".\"connamespace\" = \"fk_ns\".\"oid\" INNER JOIN \"pg_attribute\" AS \"fk_column\" ON \"c\".\"conrelid\" = \"fk_column\".\"attrelid\" INNER JOIN \"pg_class\" AS \"pk_table\" ON \"c\".\"confrelid\" = \"pk_table\".\"oid\" INNER JOIN \"pg_namespace\" AS \"pk_ns\" ON \"pk_table\".\"relnamespace\" = \"pk_ns\".\"oid\" INNER JOIN \"pg_attribute\" AS \"pk_column\" ON \"c\".\"confrelid\" = \"pk_column\".\"attrelid\" WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND (\"c\".\"contype\" = 'f'::char) AND (\"fk_column\".\"attnum\" = ANY(c.conkey)) AND (\"pk_column\".\"attnum\" = ANY(c.confkey)) AND (\"fk_ns\".\"nspname\" IN (?)) ORDER BY \"fk-table-schema\" ASC, \"fk-table-name\" ASC",
                  "public");
            // the query builder (src/metabase/driver/sql/query_processor.clj): a breakout with a sum, and a
            // month breakout of a date column (postgres.clj date-trunc casts it back to date)
            check("metabase.sum", c, "SELECT \"public\".\"" + table + "\".\"" + dimension + "\" AS \"" + dimension + "\", SUM(\"public\".\"" + table + "\".\"" + measure + "\") AS \"sum\" FROM \"public\".\"" + table + "\" GROUP BY \"public\".\"" + table + "\".\"" + dimension + "\" ORDER BY \"public\".\"" + table + "\".\"" + dimension + "\" ASC");
            check("metabase.month", c, "SELECT CAST(DATE_TRUNC('month', \"public\".\"" + table + "\".\"metric_time\") AS date) AS \"metric_time\", SUM(\"public\".\"" + table + "\".\"" + measure + "\") AS \"sum\" FROM \"public\".\"" + table + "\" GROUP BY CAST(DATE_TRUNC('month', \"public\".\"" + table + "\".\"metric_time\") AS date) ORDER BY CAST(DATE_TRUNC('month', \"public\".\"" + table + "\".\"metric_time\") AS date) ASC");
            // a nested question: the saved question is the source subquery
            check("metabase.nested", c, "SELECT \"source\".\"" + dimension + "\" AS \"" + dimension + "\", SUM(\"source\".\"" + measure + "\") AS \"sum\" FROM (SELECT \"public\".\"" + table + "\".\"" + dimension + "\" AS \"" + dimension + "\", \"public\".\"" + table + "\".\"metric_time\" AS \"metric_time\", \"public\".\"" + table + "\".\"" + measure + "\" AS \"" + measure + "\" FROM \"public\".\"" + table + "\") AS \"source\" GROUP BY \"source\".\"" + dimension + "\" ORDER BY \"source\".\"" + dimension + "\" ASC");
            check("metabase.count", c, "SELECT COUNT(*) AS \"count\" FROM \"public\".\"" + table + "\"");

            // DBeaver (plugins/org.jkiss.dbeaver.ext.postgresql), through this driver:
            // PostgreDatabase.readDatabaseInfo
            check("dbeaver.database", c, "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname=?", c.getCatalog());
            // PostgreDatabase.SchemaCache.prepareLookupStatement
            check("dbeaver.schemas", c, "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass\n"
                + " ORDER BY nspname");
            long publicOid;
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("select oid from pg_catalog.pg_namespace where nspname = 'public'")) {
                rs.next();
                publicOid = rs.getLong(1);
            }
            // PostgreSchema.TableCache.prepareLookupStatement
            check("dbeaver.tables", c, "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key \n"
                + "FROM pg_catalog.pg_class c\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass\n"
                + "WHERE c.relnamespace=? AND c.relkind not in ('i','I','c')", publicOid);
            long tableOid;
            try (PreparedStatement ps = c.prepareStatement("select oid from pg_catalog.pg_class where relname = ?")) {
                ps.setString(1, table);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    tableOid = rs.getLong(1);
                }
            }
            // PostgreSchema.TableCache.prepareChildrenStatement (columns of one table)
            check("dbeaver.columns", c, "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid\n"
                + "FROM pg_catalog.pg_attribute a\n"
                + "INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)\n"
                + "LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)\n"
                + "LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid\n"
                + "WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid=?\n"
                + "ORDER BY a.attnum", tableOid);
            // PostgreDatabase data types (PostgreDataTypeCache.getBaseTypeNameClause)
            check("dbeaver.types", c, "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description\n"
                + "FROM pg_catalog.pg_type t\n"
                + "LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem \n"
                + "LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid\n"
                + "LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid\n"
                + "WHERE t.typname IS NOT NULL\n"
                + "AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')");
        }
        print("done", "ok");
    }
}
