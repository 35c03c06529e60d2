package collect

import (
	"bytes"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// ethtoolInfo asks the kernel (SIOCETHTOOL ETHTOOL_GDRVINFO, what `ethtool
// -i` prints) for a NIC's driver and firmware versions: no ethtool binary
// is needed in the initramfs.
func ethtoolInfo(name string) (driverVersion, firmware string, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", "", fmt.Errorf("ethtool %s: socket: %w", name, err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if err != nil {
		return "", "", fmt.Errorf("ethtool %s: driver info: %w", name, err)
	}
	return cstr(info.Version[:]), firmwareVersion(cstr(info.Fw_version[:])), nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

// firmwareVersion keeps the version part of what drivers report: mlx5's
// "28.41.1000 (MT_0000000838)" is 28.41.1000, ixgbe's "0x80000f0d, 1.2829.0"
// is 0x80000f0d (the NVM image), as the BMC and the profiles name them.
// "N/A" and the like are not a version.
func firmwareVersion(s string) string {
	if i := strings.Index(s, " ("); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, ","); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "n/a") {
		return ""
	}
	return s
}
