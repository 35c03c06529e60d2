package imaging

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/rackstrap/rackstrap/images/stream"
)

func compress(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

// TestZstdImage: the image comes compressed (what the store keeps), is
// decoded while streaming, resumed with Range at the compressed byte it
// stopped at, and verified and read back as the raw image.
func TestZstdImage(t *testing.T) {
	t.Parallel()
	img := image(12 << 20)
	clear(img[2<<20 : 9<<20])
	z := compress(t, img)
	var gets atomic.Int32
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if gets.Add(1) == 1 {
			// the first connection drops a third of the way in
			w.Header().Set("Content-Length", itoa(len(z)))
			w.Header().Set("ETag", `"z1"`)
			w.Write(z[:len(z)/3])
			panic(http.ErrAbortHandler)
		}
		w.Header().Set("ETag", `"z1"`)
		http.ServeContent(w, r, "os.raw.zst", time.Time{}, bytes.NewReader(z))
	})
	o := fast()
	o.Target = filepath.Join(t.TempDir(), "disk.img")
	p := payload(s.URL+"/os.raw.zst", img)
	p.Compression = "zstd"
	rep, err := Write(context.Background(), p, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SHA256 != digest(img) || rep.Bytes != int64(len(img)) || rep.Resumes != 1 {
		t.Errorf("report = %+v", rep)
	}
	if got, _ := os.ReadFile(o.Target); !bytes.Equal(got, img) {
		t.Error("the target is not the image")
	}
}

func TestZstdFaults(t *testing.T) {
	t.Parallel()
	img := image(3<<20 + 7)
	z := compress(t, img)
	bad := bytes.Clone(z)
	bad[len(bad)/2] ^= 0xff
	other := compress(t, append(bytes.Clone(img[:len(img)-1]), 1))
	for name, tc := range map[string]struct {
		body    []byte
		corrupt bool
		want    string
	}{
		"corrupt stream":      {body: bad, corrupt: true, want: "image verification failed"},
		"truncated on server": {body: z[:len(z)-100], corrupt: true, want: "image verification failed"},
		"another image":       {body: other, corrupt: true, want: "the image hashes to"},
		"server down":         {body: nil, want: "gave up after"},
		"no Content-Length":   {body: []byte("chunked"), want: "sends no Content-Length for the compressed image"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := serve(t, func(w http.ResponseWriter, r *http.Request) {
				switch string(tc.body) {
				case "":
					http.Error(w, "down", http.StatusBadGateway)
					return
				case "chunked":
					w.(http.Flusher).Flush() // no Content-Length
					w.Write(z)
					return
				}
				http.ServeContent(w, r, "os.raw.zst", time.Time{}, bytes.NewReader(tc.body))
			})
			o := fast()
			o.Target = filepath.Join(t.TempDir(), "disk.img")
			p := payload(s.URL, img)
			p.Compression = "zstd"
			_, err := Write(context.Background(), p, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, stream.ErrCorrupt) != tc.corrupt {
				t.Fatalf("Write = %v, want %q (corrupt: %v)", err, tc.want, tc.corrupt)
			}
		})
	}
	if err := (Payload{URL: "http://x/a", SHA256: strings.Repeat("a", 64), Size: 1, Server: "s", FirstBootToken: "t", Compression: "gzip"}).Check(); err == nil || !strings.Contains(err.Error(), `compression "gzip" is not zstd`) {
		t.Errorf("Check(gzip) = %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
