//go:build !linux

package collect

import "errors"

func ethtoolInfo(name string) (string, string, error) {
	return "", "", errors.New("ethtool: only on Linux")
}
