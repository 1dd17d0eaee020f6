package tunnel

import "testing"

func TestChunkCap(t *testing.T) {
	tests := []struct{ n, want int }{
		{0, 1},
		{1, 1},
		{100, 128},
		{4096, 4096},
		{4097, 8192},
		{64512, chunkSize}, // a DATA payload
		{chunkSize, chunkSize},
		{chunkSize + 1, chunkSize},
		{1 << 20, chunkSize},
	}
	for _, tc := range tests {
		if got := chunkCap(tc.n); got != tc.want {
			t.Errorf("chunkCap(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func TestChunkReuse(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		reuse bool
	}{
		{"full size", chunkSize, true},
		{"smaller", 4096, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for len(freeChunks) > 0 {
				<-freeChunks
			}
			b := getChunk(tc.n)
			if len(b) != 0 || cap(b) != tc.n {
				t.Fatalf("getChunk(%d): len %d cap %d", tc.n, len(b), cap(b))
			}
			b = append(b, 1, 2, 3)
			putChunk(b)
			c := getChunk(tc.n)
			if len(c) != 0 || cap(c) != tc.n {
				t.Fatalf("getChunk(%d) after put: len %d cap %d", tc.n, len(c), cap(c))
			}
			if same := &b[:1][0] == &c[:1][0]; same != tc.reuse {
				t.Errorf("chunk reused: %v, want %v", same, tc.reuse)
			}
		})
	}
}

// TestReleaseIdle: the free frames and chunks are dropped, and the next
// ones are allocated afresh.
func TestReleaseIdle(t *testing.T) {
	for range maxFreeChunks {
		putChunk(make([]byte, 0, chunkSize))
	}
	for range maxFreeFrames {
		putFrame(getFrame())
	}
	if len(freeChunks) == 0 || len(framePool.free) == 0 {
		t.Fatalf("free lists: %d chunks, %d frames before; want some", len(freeChunks), len(framePool.free))
	}
	NewLimits(0, 0, 0).ReleaseIdle()
	if len(freeChunks) != 0 || len(framePool.free) != 0 {
		t.Errorf("free lists: %d chunks, %d frames after ReleaseIdle; want none", len(freeChunks), len(framePool.free))
	}
	if c := getChunk(chunkSize); cap(c) != chunkSize {
		t.Errorf("a chunk after ReleaseIdle has capacity %d", cap(c))
	}
}
