// Go's sync.Pool round trip, the same operation as the Rust `object/round_trip` bench:
// get a 4 KiB byte buffer, append one byte, put it back (reset to length 0).
//
//	go test -run '^$' -bench 'BenchmarkPool(Single|Parallel)$' -cpu 1,2,8
//
// BenchmarkPoolSingle runs on one goroutine. BenchmarkPoolParallel runs b.RunParallel with
// GOMAXPROCS goroutines (-cpu 1,2,8 sets it, matching the Rust bench's 1, 2 and 8 threads);
// ns/op is wall time over all goroutines' operations, as in the Rust bench.
package syncpool

import "sync"
import "testing"

const bufSize = 4096

var pool = sync.Pool{New: func() any {
	b := make([]byte, 0, bufSize)
	return &b
}}

// sink keeps the compiler from proving the append dead.
var sink byte

func roundTrip() byte {
	p := pool.Get().(*[]byte)
	b := append(*p, 1)
	last := b[len(b)-1]
	*p = b[:0]
	pool.Put(p)
	return last
}

func BenchmarkPoolSingle(b *testing.B) {
	var acc byte
	for i := 0; i < b.N; i++ {
		acc += roundTrip()
	}
	sink = acc
}

func BenchmarkPoolParallel(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		var acc byte
		for pb.Next() {
			acc += roundTrip()
		}
		if acc == 255 {
			sink = acc
		}
	})
}

// TestRoundTripKeepsCapacity checks the operation reuses a 4 KiB buffer, reset on return.
func TestRoundTripKeepsCapacity(t *testing.T) {
	if roundTrip() != 1 {
		t.Fatal("the appended byte was not read back")
	}
	p := pool.Get().(*[]byte)
	if len(*p) != 0 || cap(*p) != bufSize {
		t.Fatalf("pooled buffer len %d cap %d, want 0 and %d", len(*p), cap(*p), bufSize)
	}
	pool.Put(p)
}
