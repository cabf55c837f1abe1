package filestamp

import (
	"io/fs"
	"os"
	"syscall"
)

// Stamp identifies one version of a file; two stamps of the same version
// are equal (==). The zero Stamp is no file.
type Stamp struct {
	mod, change int64 // Unix nanoseconds
	size        int64
	dev, ino    uint64
}

// Of returns the stamp of the file fi describes (os.Stat's, following
// links).
func Of(fi fs.FileInfo) Stamp {
	s := Stamp{mod: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.change = st.Ctim.Nano()
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s
}

// Stat returns the stamp of the file at path, following links.
func Stat(path string) (Stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{}, err
	}
	return Of(fi), nil
}
