package rootfs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func devOf(dir string) (major, minor uint32, err error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", dir, err)
	}
	return unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), nil
}
