// Package atomicfile writes a file that keyhole or its operators read back
// (a catalog dump, the reviewers file) so that no reader ever sees half of
// it: the data goes to a temporary file next to the destination, which is
// then renamed over it.
//
// The rename replaces whatever the path names, so Write first looks at
// what that is: a symbolic link is followed and its target replaced (the
// link stays a link, as with a Kubernetes ConfigMap's ..data links); a
// path that is not a regular file (a device such as /dev/stdout, a FIFO)
// is written straight through, since renaming over it would replace the
// device node or pipe with a regular file.
package atomicfile
