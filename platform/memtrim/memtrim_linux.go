package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// DropExecPages unmaps from this process the resident pages of its
// executable's read-only mappings (code, read-only data; never the
// writable data, whose changes MADV_DONTNEED would discard). It returns
// the bytes of mappings advised.
func DropExecPages() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("find the executable: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("read the memory map: %w", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, end, ok := readOnlyMapping(sc.Bytes(), exe)
		if !ok {
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("madvise: %w", e)
		}
		n += int(end - start)
	}
	return n, nil
}

// readOnlyMapping parses a line of /proc/self/maps ("start-end perms offset
// dev inode path") and reports the range when it maps exe read-only and
// private.
func readOnlyMapping(line []byte, exe string) (start, end uintptr, ok bool) {
	f := bytes.Fields(line)
	if len(f) != 6 || string(f[5]) != exe {
		return 0, 0, false
	}
	if p := string(f[1]); p != "r-xp" && p != "r--p" {
		return 0, 0, false
	}
	lo, hi, ok := bytes.Cut(f[0], []byte("-"))
	if !ok {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(string(lo), 16, 64)
	e, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
