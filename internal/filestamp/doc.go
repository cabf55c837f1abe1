// Package filestamp tells versions of a file apart for the files keyhole
// polls for changes: the policy, the revoked-token list and the reviewers
// file. A new version must not be missed, least of all a revocation.
//
// The modification time and size alone miss a new version of the same
// size whose writer kept the old time (cp -p, rsync -t, tar x): a Stamp
// also holds the inode change time, which no one can set and which every
// write and rename moves, and the device and inode number, which change
// when a file is renamed into place (a ConfigMap's swapped link, an
// editor's save-as-new-file).
package filestamp
