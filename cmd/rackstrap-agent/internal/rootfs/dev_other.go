//go:build !linux

package rootfs

import "errors"

func devOf(string) (uint32, uint32, error) {
	return 0, 0, errors.New("finding the root device is supported on Linux only")
}
