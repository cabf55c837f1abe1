#!/usr/bin/env bash
# vault.sh — the Vault server keyhole's tests and demos use, built from source.
#
#   scripts/vault.sh build     build bin/vault (Vault v1.17.0) from tools/vault,
#                              unless bin/vault already reports that version
#   scripts/vault.sh dev       run a dev server in the foreground on
#                              127.0.0.1:${VAULT_PORT:-8200}, root token
#                              ${VAULT_DEV_ROOT_TOKEN:-keyhole-dev-root}
#   scripts/vault.sh version   print the pinned version
#
# The build takes ~6 minutes on a 2-core machine the first time; Go's build
# and module caches make later builds fast. No network is needed once the
# module cache is filled. tools/vault is its own Go module: keyhole's go.mod
# does not depend on Vault.
set -euo pipefail

VERSION=1.17.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin/vault"

have_version() {
	[[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -q "^Vault v${VERSION}\b"
}

case "${1:-}" in
build)
	if have_version; then
		echo "bin/vault is Vault v${VERSION} already"
		exit 0
	fi
	mkdir -p "$root/bin"
	echo "building Vault v${VERSION} from source into bin/vault (first time ~6 min)..." >&2
	cd "$root/tools/vault"
	# go.sum holds Vault v1.17.0's own go.sum: a few of its modules are not
	# in the public checksum database, so it must stay complete (readonly).
	tmp="$root/bin/.vault.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	GOFLAGS=-mod=readonly go build -o "$tmp" github.com/hashicorp/vault
	mv "$tmp" "$bin"
	trap - EXIT
	"$bin" version
	;;
dev)
	have_version || "$0" build
	exec "$bin" server -dev \
		-dev-listen-address="127.0.0.1:${VAULT_PORT:-8200}" \
		-dev-root-token-id="${VAULT_DEV_ROOT_TOKEN:-keyhole-dev-root}" \
		-dev-no-store-token
	;;
version)
	echo "$VERSION"
	;;
*)
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
