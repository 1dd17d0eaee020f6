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
// writable data, whose changes MADV_DONTNEED would discard). A read-only
// mapping that holds private copies of its pages is left alone: in a
// position-independent build (-buildmode=pie, the default of some
// distributions' Go packages) the dynamic loader relocated the read-only
// data after start, and dropping those copies would read back unrelocated
// pages and crash the process. It returns the bytes of mappings advised.
func DropExecPages() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("find the executable: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("read the memory map: %w", err)
	}
	n := 0
	for _, m := range cleanReadOnly(smaps, exe) {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m[0], m[1]-m[0], syscall.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("madvise: %w", e)
		}
		n += int(m[1] - m[0])
	}
	return n, nil
}

// cleanReadOnly returns the ranges of /proc/self/smaps that map exe
// read-only and private and hold no private (copied-on-write) pages: those
// whose "Anonymous:" line says 0 kB. A mapping without that line is left
// alone too.
func cleanReadOnly(smaps []byte, exe string) [][2]uintptr {
	var out [][2]uintptr
	var cur [2]uintptr
	in := false // in the block of a read-only mapping of exe
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		line := sc.Bytes()
		if v, ok := bytes.CutPrefix(line, []byte("Anonymous:")); ok {
			if f := bytes.Fields(v); in && len(f) > 0 && string(f[0]) == "0" {
				out = append(out, cur)
			}
			in = false
			continue
		}
		if len(line) > 0 && bytes.IndexByte(line, ':') > bytes.IndexByte(line, ' ') { // a mapping's header
			start, end, ok := readOnlyMapping(line, exe)
			cur, in = [2]uintptr{start, end}, ok
		}
	}
	return out
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
