// Package config is keyhole's server configuration: the keyhole.yaml file
// that says where keyhole listens, which TLS certificate it presents, which
// upstream databases it forwards to, how agents prove who they are, where
// upstream credentials come from (a static login or Vault), where audit
// events go, which policy file to load and the connection limits.
//
// The file is strict: an unknown key, a wrong type or a value that fails
// Validate is an error that names the file and line. Secrets never live in
// the file: it names environment variables (password_env, token_env,
// secret_id_env) that hold them. The zero value of every field means the
// documented default (see Defaults); command-line flags override the file.
// The policy (roles, labels, agents) is a separate file owned by sqlpolicy.
package config
