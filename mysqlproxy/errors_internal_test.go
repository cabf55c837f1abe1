package mysqlproxy

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestScrubLogin(t *testing.T) {
	long := "v-approle-analyst-" + strings.Repeat("x", 40) // 58 bytes; messages keep 48
	for _, tc := range []struct{ login, msg, want string }{
		{"kh_1", "SELECT command denied to user 'kh_1'@'localhost' for table `d`.`t`", "SELECT command denied to user 'bot'@'keyhole' for table `d`.`t`"},
		{"kh_1", "Access denied for user 'kh_1'@'10.0.0.5' to database 'd'", "Access denied for user 'bot'@'keyhole' to database 'd'"},
		{"kh_1", "kh_1 kh_10 xkh_1 'kh_1'", "bot kh_10 xkh_1 'bot'"},
		{"app", "Unknown column 'application' in 'field list'", "Unknown column 'application' in 'field list'"},
		{long, "denied to user '" + long[:48] + "'@'localhost' for table `t`", "denied to user 'bot'@'keyhole' for table `t`"},
		{long, "the definer '" + long + "'@'%' does not exist", "the definer 'bot'@'keyhole' does not exist"},
		{"kh_1", "user 'kh_1'@'unterminated", "user 'bot'@'unterminated"},
	} {
		got, changed := scrubLogin(tc.msg, tc.login, "bot")
		assert.Equal(t, tc.want, got)
		assert.Equal(t, tc.want != tc.msg, changed)
	}
}
