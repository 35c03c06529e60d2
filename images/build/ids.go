package build

import (
	"crypto/sha256"
	"fmt"
)

// derivedUUID returns a random-looking (version 4, RFC 4122 variant) UUID that
// is a pure function of the spec digest and a purpose label, so a rebuild
// gets the same disk, partition and filesystem identifiers.
func derivedUUID(specDigest, label string) [16]byte {
	sum := sha256.Sum256([]byte("rackstrap-image-uuid\x00" + specDigest + "\x00" + label))
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return u
}

func uuidString(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
