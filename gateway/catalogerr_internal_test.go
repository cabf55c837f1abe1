package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keyholedb/keyhole/config"
	"github.com/keyholedb/keyhole/creds"
)

// A refused AppRole login (Vault answers a wrong secret_id with 400) was
// reported as "Vault has no role …/roles/keyhole-catalog", sending the
// operator to create a role that exists.
func TestCatalogLoginErrorNamesAMissingRoleOnlyForACredsRead(t *testing.T) {
	t.Parallel()
	up := &Upstream{Name: "shop", Dialect: config.DialectPostgres, CatalogRole: "keyhole-catalog"}
	v := &config.Vault{}
	login := catalogLoginError(up, v, &creds.VaultError{Op: "approle login", Status: 400, Class: "status 400"})
	assert.NotContains(t, login.Error(), "Vault has no role")
	assert.ErrorIs(t, login, creds.ErrUnavailable)
	read := catalogLoginError(up, v, &creds.VaultError{Op: "read creds for role keyhole-catalog", Status: 400, Class: "status 400"})
	assert.Contains(t, read.Error(), "Vault has no role")
}
