package imaging

import (
	"errors"
	"io"
)

// prefetch reads its source ahead in a goroutine, so the network read of
// the next chunks overlaps with hashing and writing this one (a 2-core
// node otherwise waits for each in turn). The goroutine owns the source
// until stop returns.
type prefetch struct {
	ch     chan chunk
	free   chan []byte
	done   chan struct{}
	exited chan struct{}
	held   []byte // the buffer being read from, returned to free when drained
	cur    []byte
	err    error
}

type chunk struct {
	b   []byte
	err error
}

func newPrefetch(r io.Reader, buffers, size int) *prefetch {
	p := &prefetch{ch: make(chan chunk, buffers), free: make(chan []byte, buffers+1), done: make(chan struct{}), exited: make(chan struct{})}
	for range buffers + 1 {
		p.free <- make([]byte, size)
	}
	go func() {
		defer close(p.exited)
		for {
			var buf []byte
			select {
			case buf = <-p.free:
			case <-p.done:
				return
			}
			n, err := io.ReadFull(r, buf)
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			select {
			case p.ch <- chunk{buf[:n], err}:
			case <-p.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *prefetch) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.err != nil {
			return 0, p.err
		}
		if p.held != nil {
			p.free <- p.held[:cap(p.held)]
			p.held = nil
		}
		c := <-p.ch
		p.held, p.cur, p.err = c.b, c.b, c.err
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// stop ends the read-ahead and waits for the goroutine; the caller must
// first make a blocked source read return (cancel its context).
func (p *prefetch) stop() {
	close(p.done)
	<-p.exited
}
