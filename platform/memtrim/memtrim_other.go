//go:build !linux

package memtrim

// DropExecPages does nothing outside Linux.
func DropExecPages() (int, error) { return 0, nil }
