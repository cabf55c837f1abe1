// Package mysql holds the MySQL client runners that keyhole's mysqlproxy
// tests and the end-to-end tests (internal/e2e/mysql_test.go) drive: pymysql_runner.py (PyMySQL, Debian's python3-pymysql) and
// node/runner.js (mysql2; `npm ci` in node/, run by scripts/setup.sh).
// Each connects through keyhole with the settings in its environment,
// runs the same scenario and prints one JSON object of results.
package mysql
